"""Data in: image folders, zips and label files read as their owners meant them, the health report, a decoded-image
cache, augmentation presets.

`images` reads one file, `zips` checks and extracts zips, `layouts` and `labels` recognise how a dataset is laid out,
`dataset` splits and reports, `uploads` keeps what a browser uploads and `webcam` the pictures taken with the
browser's camera.
"""

from workbench.data.dataset import (
    AUGMENTATIONS,
    SPLITS,
    STRONG_IMBALANCE_RATIO,
    Augmentation,
    CachedImages,
    DataSpec,
    HealthReport,
    ImageCache,
    ImageDataset,
    LayoutOptions,
    Sample,
    augmentation_preview,
    eval_transform,
    layout_options,
    open_dataset,
    recognise,
)
from workbench.data.images import (
    ARCHIVE_EXTENSIONS,
    IGNORED_NAMES,
    IMAGE_EXTENSIONS,
    RESIZE_METHOD,
    VERIFY_DRAFT_SIZE,
    DataError,
    decode_resized,
    load_rgb,
)
from workbench.data.layouts import (
    NO_FOLDER,
    SHOWN_EXAMPLES,
    SPLIT_FOLDER_NAMES,
    VAL_FOLDER_NAMES,
    LayoutChoice,
    SkippedFile,
)
from workbench.data.zips import (
    MAX_ZIP_MEMBERS,
    MAX_ZIP_RATIO,
    MAX_ZIP_TOTAL_BYTES,
    ZIP_RATIO_MIN_BYTES,
    check_zip,
    unpack_zip,
)
