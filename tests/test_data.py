"""Loading images from folders and file lists; patient ids; grouped splits."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumonia_cnn.data import (
    DataError,
    UnreadableImageWarning,
    decode_image,
    grouped_split,
    load_image_folder,
    load_images,
    patient_id,
)
from pneumonia_cnn.data import _cache as cache_mod


def _write(path: Path, arr, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.mark.parametrize("name, expected", [
    ("person1005_bacteria_2936.jpeg", "person1005"),
    ("person1005_virus_1688.jpeg", "person1005"),
    ("NORMAL2-IM-0041-0001.jpeg", "NORMAL2-IM-0041"),
    ("IM-0511-0001-0001.jpeg", "IM-0511"),
    ("IM-0511-0001-0002.jpeg", "IM-0511"),
    ("/some/dir/IM-0133-0001.jpeg", "IM-0133"),
    ("scan_42.png", "scan_42"),
])
def test_patient_id(name, expected):
    assert patient_id(name) == expected


def test_normal2_and_plain_im_are_different_patients():
    assert patient_id("NORMAL2-IM-0620-0001.jpeg") != patient_id("IM-0620-0001-0001.jpeg")


def test_load_folder_shapes_labels_groups(synthetic_dir):
    d = load_image_folder(synthetic_dir, 40, cache=False)
    assert d.X.shape == (60, 40, 40, 1) and d.X.dtype == np.uint8
    assert d.class_counts() == {"NORMAL": 24, "PNEUMONIA": 36}
    assert len(d.paths) == len(d.groups) == 60
    assert d.groups[0] == patient_id(d.paths[0])
    assert len(np.unique(d.groups)) == 30  # two images per patient
    assert d.X.std() > 10  # real pixel content, not zeros


def test_class_folders_case_insensitive_and_nested(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (20, 30), dtype=np.uint8)
    # Kaggle's double chest_xray/chest_xray/, lower-case class folders, images one level deeper
    root = tmp_path / "chest_xray"
    _write(root / "chest_xray" / "normal" / "a" / "IM-0001-0001.png", img)
    _write(root / "chest_xray" / "Pneumonia" / "person1_virus_1.png", img)
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._x.jpeg").write_bytes(b"\x00\x05")
    (root / "chest_xray" / "normal" / ".DS_Store").write_bytes(b"junk")
    d = load_image_folder(root, 16, cache=False)
    assert sorted(d.y.tolist()) == ["NORMAL", "PNEUMONIA"]


def test_rgb_16bit_rgba_and_any_size_decode(tmp_path):
    gray = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))
    rgb = _write(tmp_path / "rgb.jpg", np.stack([gray] * 3, -1), quality=95)
    g16 = tmp_path / "g16.png"
    Image.fromarray((gray.astype(np.uint16) * 257)).save(g16)
    rgba = _write(tmp_path / "rgba.png", np.dstack([gray, gray, gray, np.full_like(gray, 255)]))
    small = _write(tmp_path / "small.png", gray[:8, :8])
    out = [decode_image(p, 32) for p in (rgb, g16, rgba, small)]
    for arr in out:
        assert arr.shape == (32, 32) and arr.dtype == np.uint8
    # the same gradient gives the same pixels whatever the encoding (JPEG within a few levels)
    assert np.abs(out[1].astype(int) - out[2].astype(int)).max() <= 1
    assert np.abs(out[0].astype(int) - out[2].astype(int)).max() <= 6


def test_cache_skips_decoding_second_time(synthetic_dir, tmp_path, monkeypatch):
    first = load_image_folder(synthetic_dir, 24, cache=tmp_path)
    calls = []
    monkeypatch.setattr(cache_mod, "decode_into", lambda *a, **k: calls.append(1))
    second = load_image_folder(synthetic_dir, 24, cache=tmp_path)
    assert calls == []
    np.testing.assert_array_equal(first.X, second.X)
    assert len(list(tmp_path.glob("*/complete.json"))) == 1


def test_cache_invalidated_by_size_and_changed_files(synthetic_dir, tmp_path):
    load_image_folder(synthetic_dir, 24, cache=tmp_path)
    load_image_folder(synthetic_dir, 28, cache=tmp_path)
    assert len(list(tmp_path.glob("*/X.npy"))) == 2
    key1 = cache_mod._cache_key([str(p) for p in sorted(synthetic_dir.rglob("*.jpeg"))], 24)
    f = next(synthetic_dir.rglob("*.jpeg"))
    st = f.stat()
    import os
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    key2 = cache_mod._cache_key([str(p) for p in sorted(synthetic_dir.rglob("*.jpeg"))], 24)
    assert key1 != key2


def test_unreadable_files_skipped_with_one_warning(tmp_path):
    for i in range(3):  # distinct films (identical ones in both classes are warned about)
        _write(tmp_path / "NORMAL" / f"IM-000{i}-0001.png", np.full((20, 20), 10 + i, np.uint8))
        _write(tmp_path / "PNEUMONIA" / f"person{i}_virus_{i}.png",
               np.full((20, 20), 100 + i, np.uint8))
    (tmp_path / "NORMAL" / "empty.jpeg").write_bytes(b"")
    (tmp_path / "PNEUMONIA" / "text.jpeg").write_text("not an image")
    with pytest.warns(UnreadableImageWarning) as rec:
        d = load_image_folder(tmp_path, 16, cache=False)
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert "empty.jpeg" in msg and "text.jpeg" in msg and "2 unreadable" in msg
    assert len(d) == 6 and len(d.skipped) == 2
    with pytest.raises(DataError, match="could not be read"):
        load_image_folder(tmp_path, 16, cache=False, strict=True)


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is a file"),
    (lambda p: p, "no class folders"),
])
def test_bad_folders_clear_errors(tmp_path, make, match):
    with pytest.raises(DataError, match=match):
        load_image_folder(make(tmp_path), 16, cache=False)


def test_class_folders_without_images(tmp_path):
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "PNEUMONIA").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        load_image_folder(tmp_path, 16, cache=False)


def test_extra_folder_is_ignored_with_warning(synthetic_dir, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(synthetic_dir, root)
    (root / "COVID").mkdir()
    with pytest.warns(UserWarning, match="COVID"):
        d = load_image_folder(root, 16, cache=False)
    assert set(d.y) == {"NORMAL", "PNEUMONIA"}


def test_load_images_keeps_order_and_is_strict(synthetic_data, tmp_path):
    paths = list(synthetic_data.paths[[5, 0, 40]])
    d = load_images(paths, 32, cache=False)
    np.testing.assert_array_equal(d.X, synthetic_data.X[[5, 0, 40]])
    with pytest.raises(DataError, match="do not exist"):
        load_images([str(tmp_path / "nope.png")], 32, cache=False)
    # one path is not a list of paths (it would be read character by character)
    with pytest.raises(TypeError, match="load_image_folder"):
        load_images(str(tmp_path), 32, cache=False)
    with pytest.raises(TypeError, match=r"load_images\(\[path\]\)"):
        load_images(paths[0], 32, cache=False)


def test_grouped_split_disjoint_and_stratified(synthetic_data):
    y, g = synthetic_data.y, synthetic_data.groups
    tr, te = grouped_split(y, g, 0.25, random_state=0)
    assert set(g[tr]).isdisjoint(g[te])
    assert len(tr) + len(te) == len(y)
    assert set(y[te]) == {"NORMAL", "PNEUMONIA"}
    tr2, te2 = grouped_split(y, g, 0.25, random_state=0)
    np.testing.assert_array_equal(te, te2)


# ---------------------------------------------------------------------------------------------
# Medical bit depths, several frames, EXIF orientation, odd shapes: no silent guesses
# ---------------------------------------------------------------------------------------------
def _ramp(top: int, dtype) -> np.ndarray:
    return np.tile(np.linspace(0, top, 64), (64, 1)).astype(dtype)


def test_12_bit_data_in_a_16_bit_png_is_not_shown_nearly_black(tmp_path):
    from PIL import PngImagePlugin

    from pneumonia_cnn.data import decode_image, load_images

    plain, tagged = tmp_path / "plain.png", tmp_path / "tagged.png"
    Image.fromarray(_ramp(4095, np.uint16)).save(plain)
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", bytes([12]))  # the file says: 12 significant bits
    Image.fromarray(_ramp(4095, np.uint16)).save(tagged, pnginfo=info)
    notes = []
    assert decode_image(plain, 64, notes).max() == 255 and notes[0][0] == "bit_depth"
    notes = []
    assert decode_image(tagged, 64, notes).max() == 255 and notes == []
    with pytest.warns(UserWarning, match="deeper than 8 bits without a bit depth"):
        load_images([str(plain)], 64, cache=False)


def test_png_sbit_is_read_from_request_bytes_as_from_the_file(tmp_path):
    """The served model decoded a 12-bit film in a 16-bit PNG 4x brighter than `predict`
    did: sBIT was read from paths only (issue 22, finding 1). One reading for both."""
    import io

    from PIL import PngImagePlugin

    from pneumonia_cnn.data import decode_image
    from pneumonia_cnn.tracking import decode_request

    path = tmp_path / "dim.png"
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", bytes([12]))
    Image.fromarray(_ramp(800, np.uint16)).save(path, pnginfo=info)  # a dim 12-bit film
    from_file = decode_image(path, 64)
    raw = path.read_bytes()
    assert np.array_equal(decode_image(io.BytesIO(raw), 64), from_file)
    assert np.array_equal(decode_request([raw], 64)[0, ..., 0], from_file)
    assert from_file.max() == round(800 / 4095 * 255)  # 12 bits, not "needs 10 bits"


def test_float_tiff_0_1_is_scaled_not_black(tmp_path):
    from pneumonia_cnn.data import decode_image

    path = tmp_path / "f.tif"
    Image.fromarray(_ramp(1, np.float32)).save(path)
    assert decode_image(path, 64).max() == 255


def test_multi_frame_files_are_reported_not_cut_to_their_first_frame(tmp_path):
    from pneumonia_cnn.data import load_images

    frames = [Image.fromarray(np.full((32, 32), v, np.uint8)) for v in (0, 255)]
    gif, tif = tmp_path / "anim.gif", tmp_path / "pages.tif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    frames[0].save(tif, save_all=True, append_images=frames[1:])
    from pneumonia_cnn.data import DataError

    with pytest.raises(DataError, match=r"anim.gif: ValueError: 2 frames(.|\n)*pages.tif"):
        load_images([str(gif), str(tif)], 32, cache=False)


def test_exif_orientation_is_applied(tmp_path):
    from pneumonia_cnn.data import decode_image

    img = np.zeros((64, 64), np.uint8)
    img[:, :32] = 255  # white on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 3  # "rotate 180 to view"
    path = tmp_path / "rotated.jpeg"
    Image.fromarray(img).save(path, exif=exif, quality=95)
    out = decode_image(path, 64)
    assert out[:, 48:].mean() > 200 and out[:, :16].mean() < 50  # white on the right


def test_very_elongated_images_are_warned_about(tmp_path):
    from pneumonia_cnn.data import load_images

    path = tmp_path / "strip.png"
    Image.fromarray(np.zeros((4, 256), np.uint8)).save(path)
    with pytest.warns(UserWarning, match="far from square"):
        load_images([str(path)], 32, cache=False)


def test_the_same_film_in_both_classes_and_linked_folders_are_not_silent(tmp_path):
    import os

    from pneumonia_cnn import load_image_folder

    root = tmp_path / "train"
    rng = np.random.default_rng(0)
    for cls, n in (("NORMAL", 3), ("PNEUMONIA", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(
                root / cls / f"person{cls[0]}{i}_x.png")
    os.symlink(root / "NORMAL" / "personN0_x.png", root / "PNEUMONIA" / "personQ9_x.png")
    extra = tmp_path / "more_normals"  # a linked sub-folder is read, not silently dropped
    extra.mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(extra / "personZ_x.png")
    os.symlink(extra, root / "NORMAL" / "linked")
    os.symlink(root, root / "NORMAL" / "loop")  # a loop is not followed
    with pytest.warns(UserWarning, match=r"1 image\(s\) appear in more than one class"):
        data = load_image_folder(root, 32, cache=False)
    assert any(str(p).endswith("personZ_x.png") for p in data.paths)
    assert len(data) == 8


def test_a_fifo_named_like_an_image_is_skipped_not_read(synthetic_dir, tmp_path):
    """Reading a FIFO blocks forever (issue 22, finding 16): only regular files are read."""
    import os
    import shutil
    import warnings

    from pneumonia_cnn import load_image_folder

    root = tmp_path / "data"
    shutil.copytree(synthetic_dir, root)
    os.mkfifo(root / "NORMAL" / "trap.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_image_folder(root, 32, cache=False)
    assert not any("trap.png" in str(p) for p in data.paths)
    assert any("not regular files" in str(w.message) and "trap.png" in str(w.message)
               for w in caught)


def test_a_file_name_that_is_not_utf8_loads_evaluates_and_explains(synthetic_dir, tmp_path,
                                                                    capsys):
    """One such name made train / evaluate / calibrate / stress refuse the whole folder
    without naming the file, and explain print a traceback (issue 22, finding 18).

    Its output and warnings are read here: a name that is not UTF-8 cannot travel in a
    test report between pytest-xdist's processes."""
    import warnings

    with warnings.catch_warnings(record=True):
        _not_utf8_name_walk(synthetic_dir, tmp_path)
    capsys.readouterr()


def _not_utf8_name_walk(synthetic_dir, tmp_path):
    import os
    import shutil

    from pneumonia_cnn import load_image_folder
    from pneumonia_cnn.cli import main

    root = tmp_path / "data"
    shutil.copytree(synthetic_dir, root)
    bad = os.path.join(os.fsencode(root / "NORMAL"), b"film\xff.png")
    shutil.copy(next((root / "PNEUMONIA").iterdir()), bad)
    data = load_image_folder(root, 32, cache=True)
    assert any("\udcff" in p for p in data.paths)
    model = tmp_path / "model"
    args = ["--backbone", "none", "--image-size", "32", "--filters", "4", "--n-networks", "1", "--epochs", "1",
            "--no-tracking", "--quiet", "--threshold", "0.5"]
    assert main(["train", str(root), "--model-out", str(model), *args]) == 0
    assert main(["evaluate", str(model), str(root), "--no-tracking", "--out",
                 str(tmp_path / "eval")]) == 0
    per_image = (tmp_path / "eval" / "per_image.csv").read_text(encoding="utf-8")
    assert "film\ufffd.png" in per_image
    assert main(["explain", str(model), str(root / "NORMAL"), "--out",
                 str(tmp_path / "ex")]) == 0
    assert "film\ufffd" in (tmp_path / "ex" / "index.html").read_text(encoding="utf-8")


def test_a_file_rewritten_in_place_with_the_same_size_and_mtime_is_decoded_again(tmp_path):
    """(issue 22, finding 4) `cp -p`, rsync -t or an archive extracted again keep size and
    mtime; the cache must not serve the old pixels. Nor may the same relative folder name
    in two working directories share an entry."""
    import os

    from pneumonia_cnn.data import load_images

    path = tmp_path / "a" / "film.bmp"
    path.parent.mkdir()
    Image.fromarray(np.full((40, 40), 30, np.uint8)).save(path)
    cache = tmp_path / "cache"
    first = load_images([str(path)], 32, cache=cache).X
    st = os.stat(path)
    Image.fromarray(np.full((40, 40), 200, np.uint8)).save(path)  # same size (BMP)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    assert os.stat(path).st_size == st.st_size
    again = load_images([str(path)], 32, cache=cache).X
    assert first.mean() < 50 and again.mean() > 150
    # the same relative name from two working directories: two entries
    other = tmp_path / "b" / "a" / "film.bmp"
    other.parent.mkdir(parents=True)
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(other)
    st = os.stat(path)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))  # as if from one archive
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        x1 = load_images(["a/film.bmp"], 32, cache=cache).X
        os.chdir(tmp_path / "b")
        x2 = load_images(["a/film.bmp"], 32, cache=cache).X
    finally:
        os.chdir(cwd)
    assert x1.mean() > 150 and abs(x2.mean() - 90) < 5


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height 16-bit grey pixels and holds almost no data: what
    a decompression bomb looks like to a decoder's header."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def test_a_film_declaring_too_many_pixels_is_refused_before_decoding(tmp_path):
    """(issue 22, finding 14) One pixel budget, checked from the header: files, request
    bytes and DICOM alike."""
    from pneumonia_cnn.data import MAX_PIXELS, decode_image, load_images
    from pneumonia_cnn.tracking import ServingInputError, decode_request

    raw = _png_header_only(13000, 13000)
    path = tmp_path / "bomb.png"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="declares 13000 x 13000 pixels"):
        decode_image(path, 64)
    with pytest.raises(ServingInputError, match="declares 13000 x 13000 pixels"):
        decode_request([raw], 64)
    with pytest.warns(UserWarning, match="bomb.png"):
        assert len(load_images([str(path)], 64, strict=False, cache=False)) == 0
    assert 13000 * 13000 > MAX_PIXELS > 4300 * 4300


def test_decode_progress_in_a_log_is_plain_lines(synthetic_dir, tmp_path, capsys):
    """Keras' progress bar wrote ANSI codes into logs (issue 20, item 11): output that is
    not a terminal gets plain lines."""
    from pneumonia_cnn import load_image_folder

    load_image_folder(synthetic_dir, 32, cache=tmp_path / "c", verbose=1)
    out = capsys.readouterr().out
    assert "\x1b[" not in out
    assert "decoded 60 of 60 images" in out
