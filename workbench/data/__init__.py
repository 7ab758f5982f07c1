"""Data in: image folders and zips read safely, the health report, a decoded-image cache, augmentation presets.

`uploads` keeps what a browser uploads.
"""

from workbench.data.dataset import (
    ARCHIVE_EXTENSIONS,
    AUGMENTATIONS,
    IGNORED_NAMES,
    IMAGE_EXTENSIONS,
    MAX_ZIP_MEMBERS,
    MAX_ZIP_RATIO,
    MAX_ZIP_TOTAL_BYTES,
    RESIZE_METHOD,
    SHOWN_EXAMPLES,
    STRONG_IMBALANCE_RATIO,
    VAL_FOLDER_NAMES,
    VERIFY_DRAFT_SIZE,
    ZIP_RATIO_MIN_BYTES,
    Augmentation,
    CachedImages,
    DataError,
    HealthReport,
    ImageCache,
    ImageDataset,
    Sample,
    SkippedFile,
    augmentation_preview,
    check_zip,
    decode_resized,
    eval_transform,
    load_rgb,
    open_dataset,
)
