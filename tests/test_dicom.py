"""DICOM inputs: decoded as a viewer shows them, checked against the source pixels."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")

from conftest import TINY  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid  # noqa: E402

from pneumonia_cnn import PneumoniaCNN, load_image_folder  # noqa: E402
from pneumonia_cnn.data import decode_image, load_images  # noqa: E402

DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


@pytest.fixture(scope="module")
def film(synthetic_data):
    """A real image of the synthetic set at 48x48, 0-255 (uint8), spanning the full range."""
    img = synthetic_data.X[0, :, :, 0].astype(float)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return np.rint(img).astype(np.uint8)


def make_dicom(path, pixels, *, bits=12, photometric="MONOCHROME2", window=None,
               modality="DX", patient="PAT-1", with_pixels=True, compress=False):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DX, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = modality, patient, generate_uid()
    if with_pixels:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
        ds.PixelRepresentation = 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if compress:
        ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_12_and_16_bit_monochrome2_decode_to_the_source(film, tmp_path):
    twelve = make_dicom(tmp_path / "a.dcm", film.astype(np.uint16) * 16, bits=12)
    sixteen = make_dicom(tmp_path / "b.dcm", film.astype(np.uint16) * 257, bits=16)
    for path in (twelve, sixteen):
        out = decode_image(path, film.shape[0])
        assert np.abs(out.astype(int) - film).max() <= 1


def test_monochrome1_is_inverted(film, tmp_path):
    m1 = make_dicom(tmp_path / "m1.dcm", film.astype(np.uint16) * 16,
                    photometric="MONOCHROME1")
    assert np.abs(decode_image(m1, film.shape[0]).astype(int) - (255 - film)).max() <= 1


def test_the_files_window_is_applied(film, tmp_path):
    stored = film.astype(np.float64) * 16  # 0..4080 in 12 bits
    center, width = 1500.0, 1000.0
    path = make_dicom(tmp_path / "w.dcm", stored, window=(center, width))
    # DICOM PS3.3 C.11.2.1.2.1, linear: the window maps onto the 12-bit output range
    expected = np.clip((stored - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255
    out = decode_image(path, film.shape[0]).astype(float)
    assert np.abs(out - expected).max() <= 1.0
    assert (out == 255).mean() > 0.05  # bright parts saturate: the window, not the range


def test_a_compressed_file_decodes_like_the_uncompressed_one(film, tmp_path):
    plain = make_dicom(tmp_path / "p.dcm", film.astype(np.uint16) * 16)
    rle = make_dicom(tmp_path / "rle.dcm", film.astype(np.uint16) * 16, compress=True)
    assert str(pydicom.dcmread(rle).file_meta.TransferSyntaxUID) == RLELossless
    np.testing.assert_array_equal(decode_image(rle, 48), decode_image(plain, 48))


def test_reports_other_modalities_and_missing_decoders_are_reported(film, tmp_path):
    from pneumonia_cnn.data import DataError

    report = make_dicom(tmp_path / "report.dcm", None, with_pixels=False)
    ct = make_dicom(tmp_path / "ct.dcm", film.astype(np.uint16) * 16, modality="CT")
    with pytest.raises(DataError) as info:
        load_images([str(report), str(ct)], 32, cache=False)
    msg = str(info.value)
    assert "report.dcm: ValueError: DICOM without pixel data" in msg
    assert "ct.dcm: ValueError: DICOM modality CT is not a projection radiograph" in msg


def test_without_pydicom_the_message_says_how_to_install_it(film, tmp_path, monkeypatch):
    import sys

    from pneumonia_cnn.data import DataError

    path = make_dicom(tmp_path / "x.dcm", film.astype(np.uint16) * 16)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if not installed
    with pytest.raises(DataError, match=r"needs pydicom: pip install 'pneumonia-cnn\[dicom\]'"):
        load_images([str(path)], 32, cache=False)


def test_a_mixed_folder_trains_predicts_and_groups_dicom_by_patient_tag(film, tmp_path):
    root = tmp_path / "site"
    rng = np.random.default_rng(0)
    for cls, base in (("NORMAL", 60), ("PNEUMONIA", 160)):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            img = np.clip(film.astype(int) // 2 + base + rng.integers(-20, 20, film.shape),
                          0, 255).astype(np.uint8)
            kind = i % 3
            if kind == 0:
                Image.fromarray(img).save(root / cls / f"{cls}{i}.jpeg")
            elif kind == 1:
                Image.fromarray(img).save(root / cls / f"{cls}{i}.png")
            else:  # a DICOM without extension, as PACS exports name them
                make_dicom(root / cls / f"IMG{i:04d}", img.astype(np.uint16) * 16,
                           patient=f"{cls}-patient-{i // 3}")
    data = load_image_folder(root, 32, cache=False)
    assert len(data) == 12
    dicom_rows = [i for i, p in enumerate(data.paths) if "IMG" in str(p)]
    assert len(dicom_rows) == 4
    assert {data.groups[i] for i in dicom_rows} == {"NORMAL-patient-0", "NORMAL-patient-1",
                                                    "PNEUMONIA-patient-0",
                                                    "PNEUMONIA-patient-1"}
    clf = PneumoniaCNN(**TINY).fit(root)
    assert clf.predict(list(data.paths)).shape == (12,)
    from pneumonia_cnn.analysis import evaluate, explain

    result = evaluate(clf, root, out_dir=tmp_path / "eval", track=False)
    assert result["n_images"] == 12 and (tmp_path / "eval" / "metrics.json").is_file()
    heat = explain(clf, data, out_dir=tmp_path / "explain")
    assert len(heat.files) == 12 and all(f.is_file() for f in map(Path, heat.files))


def test_dicom_bytes_decode_like_the_file(film, tmp_path):
    """The served model gets file bytes, not paths: DICOM is recognised by its preamble."""
    import io

    from pneumonia_cnn.data import is_dicom
    from pneumonia_cnn.tracking import decode_request

    path = make_dicom(tmp_path / "a.dcm", film.astype(np.uint16) * 16, bits=12,
                      photometric="MONOCHROME1")
    served = decode_request({"image": [open(path, "rb").read()]}, 32)
    np.testing.assert_array_equal(served[0, :, :, 0], decode_image(path, 32))
    assert not is_dicom(io.BytesIO(b"x" * 200))


def test_a_negative_rescale_slope_with_a_window_is_not_black(film, tmp_path):
    """RescaleSlope -1 (intercept 4095) and a window on the rescaled values: pydicom's
    output range runs downwards; the film must come out as the window shows it, not all
    black (issue 22, finding 3)."""
    import pydicom

    stored = film.astype(np.float64) * 16
    path = make_dicom(tmp_path / "neg.dcm", stored, window=(2000.0, 2000.0))
    ds = pydicom.dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept = -1, 4095
    ds.save_as(path)
    rescaled = 4095 - stored
    expected = np.clip((rescaled - 1999.5) / 1999 + 0.5, 0, 1) * 255  # high rescaled: bright
    out = decode_image(path, film.shape[0]).astype(float)
    assert out.max() > 100
    assert np.abs(out - expected).max() <= 1.0


def test_a_dicom_declaring_too_many_pixels_is_refused_before_decoding(film, tmp_path):
    """A small deflated DICOM declaring 8000 x 8000 cost 2.4 GB (issue 22, finding 14)."""
    import pydicom

    path = make_dicom(tmp_path / "big.dcm", film.astype(np.uint16) * 16)
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 8000, 8000  # the header says so; the data is tiny
    ds.save_as(path)
    with pytest.raises(ValueError, match="declares 8000 x 8000 pixels"):
        decode_image(path, 64)


def test_an_embedded_jpeg_larger_than_declared_is_refused_before_decoding(film, tmp_path):
    """Regression (site issue, finding 14): a DICOM whose header says 100 x 100 around a
    JPEG of 13,000 x 13,000 was decoded in full (539 MB) before the pixel budget refused
    it. The embedded image's own header is read first."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    def jpeg_dicom(path, side):
        buf = io.BytesIO()
        Image.new("L", (side, side), 128).save(buf, format="JPEG", quality=50)
        ds = pydicom.dcmread(make_dicom(tmp_path / "base.dcm", film.astype(np.uint16) * 16))
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.Rows = ds.Columns = 100  # what the header declares
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.save_as(path)
        return path

    with pytest.raises(ValueError, match="declares 8000 x 8000 pixels"):
        decode_image(jpeg_dicom(tmp_path / "bomb.dcm", 8000), 64)
    with pytest.raises(ValueError, match="embedded image is 300 x 300 pixels, but the DICOM "
                                         "header declares 100 x 100"):
        decode_image(jpeg_dicom(tmp_path / "lie.dcm", 300), 64)
