"""Runs: records on disk read back as typed objects, the registry that queues and trains them, and background jobs.

The folder format itself is `workbench.core.runfolder`; re-exported here because readers of runs look here first.
"""

from workbench.core.runfolder import (
    append_jsonl,
    BATCHES_FILE,
    clear_live,
    CONFIG_FILE,
    HEALTH_FILE,
    is_live,
    LIVE_FILE,
    mark_live,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_INFO_FILE,
    new_run_id,
    read_jsonl,
    replacing,
    run_folder,
    STALE_AFTER_S,
    SUMMARY_FILE,
    write_json,
)
from workbench.models.trained import (
    load_model,
    LoadedModel,
    save_run_model,
    saved_epoch,
)
from workbench.runs.records import (
    ENDED,
    RunRecord,
    RunSummary,
    list_runs,
    load_run,
    typed_config,
    validation_images,
)
