"""Reading chest X-rays: files, folders, data sources, DICOM, the decode cache and streams.

A data folder holds one sub-folder per class (``NORMAL/`` and ``PNEUMONIA/``, matched
case-insensitively), as in Kaggle's ``chest_xray/train``. :func:`load_image_folder` turns it
into an :class:`ImageData`: a uint8 array ``X`` of shape ``(n, size, size, 1)``, the class
name of every image, its path and its patient id (for patient-grouped splits).
:func:`load_data` reads any data source (a folder, a split root, a MedMNIST ``.npz``, a
label CSV).

Images are decoded with Pillow (pydicom for DICOM) on all cores, once: the result is cached
on disk under a key made of the file list, their sizes and modification times and the image
size, so that a second load of the same folder is a single ``np.load``. Decoding saves its
progress every few hundred images, so an interrupted load of a large folder resumes where it
stopped. Data too large to hold in memory comfortably is returned as an
:class:`ImageStream` over the memory-mapped cache.
"""

# Layout (for developers):
# Modules (private, re-exported here): ``_images`` (the shared types), ``_decode`` (one
# file to pixels), ``_cache`` (the on-disk cache), ``_folders`` (folders and file lists),
# ``_sources`` (data sources), ``_streaming`` (data larger than memory), ``_dicom``,
# ``_splits`` (patient-grouped splits and acquisition batches), ``_synthetic`` (the demo set),
# ``_limits`` (the pixel budget).

from ._cache import default_cache_dir
from ._decode import decode_image
from ._dicom import DICOM_EXTENSIONS, dicom_patient_id, is_dicom, read_dicom
from ._folders import (
    OUTPUT_MARKER,
    find_class_folders,
    image_files,
    load_image_folder,
    load_image_folders,
    load_images,
    mark_outputs,
)
from ._images import (
    CLASS_NAMES,
    IMAGE_EXTENSIONS,
    DataError,
    ImageData,
    UnreadableImageWarning,
    canonical_labels,
    display_path,
    image_fingerprints,
    is_path_list,
    patient_id,
)
from ._limits import MAX_PIXELS, check_pixel_budget
from ._sources import (
    SPLITS,
    check_source,
    evaluation_split,
    is_data_file,
    load_any,
    load_csv,
    load_data,
    parse_source,
    source_kind,
)
from ._splits import batch_masks, file_families, grouped_split
from ._streaming import (
    CHUNK,
    ImageStream,
    in_memory_limit,
    iter_chunks,
    map_stream,
    release,
    stream_batches,
)
from ._synthetic import (
    SYNTHETIC_MARKER,
    is_synthetic,
    make_synthetic_dataset,
    make_synthetic_xray,
)

__all__ = [
    "CHUNK", "CLASS_NAMES", "DICOM_EXTENSIONS", "DataError", "IMAGE_EXTENSIONS", "ImageData",
    "ImageStream", "MAX_PIXELS", "OUTPUT_MARKER", "SPLITS", "SYNTHETIC_MARKER",
    "UnreadableImageWarning",
    "batch_masks", "canonical_labels", "check_pixel_budget", "check_source", "decode_image",
    "default_cache_dir", "dicom_patient_id", "display_path", "evaluation_split",
    "file_families", "find_class_folders", "grouped_split", "image_files",
    "image_fingerprints", "in_memory_limit", "is_data_file", "is_dicom", "is_path_list",
    "is_synthetic", "iter_chunks", "load_any", "load_csv", "load_data", "load_image_folder",
    "load_image_folders", "load_images", "make_synthetic_dataset", "make_synthetic_xray",
    "map_stream", "mark_outputs", "parse_source", "patient_id", "read_dicom", "release", "source_kind",
    "stream_batches",
]
