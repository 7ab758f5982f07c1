"""Models: any timm backbone with the best weights available here, its layer groups, and a trained model on disk.
"""

from workbench.models.backbones import (
    AVAILABILITY_ORDER,
    BUNDLED_WEIGHTS,
    HUB_FILENAMES,
    BackboneError,
    BackboneInfo,
    LayerGroup,
    WeightsSource,
    backbone_info,
    bundled_weights_file,
    cached_hub_file,
    check_backbone_name,
    count_parameters,
    create_backbone,
    data_config,
    head_parameter_names,
    hub_reachable,
    layer_groups,
    list_backbones,
    load_weights,
    read_state_dict,
    weights_availability,
)
from workbench.models.trained import (
    BATCH_SIZE,
    DEFAULT_CROP_PCT,
    ImageInput,
    LoadedModel,
    Predictor,
    describe,
    load_model,
    resize_size,
    save_run_model,
    saved_epoch,
)
