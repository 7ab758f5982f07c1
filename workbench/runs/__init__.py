"""Runs: records on disk read back as typed objects, the registry that queues and trains them, and background jobs.

The folder format itself is `workbench.core.runfolder`; re-exported here because readers of runs look here first.
"""

from workbench.core.runfolder import (
    BATCHES_FILE,
    CONFIG_FILE,
    HEALTH_FILE,
    LIVE_FILE,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_INFO_FILE,
    STALE_AFTER_S,
    SUMMARY_FILE,
    append_jsonl,
    clear_live,
    is_live,
    mark_live,
    new_run_id,
    read_jsonl,
    replacing,
    run_folder,
    write_json,
)
from workbench.models.trained import (
    LoadedModel,
    load_model,
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
