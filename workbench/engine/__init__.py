"""The engine: `RunConfig`, and `Run`, which prepares a run, trains it in a background thread through the strategy's
hooks (`loop.Trainer`), streams events and writes its record as it goes; the learning-rate finder shares its step.
"""

from workbench.engine.config import CPU_IMAGE_SIZE, RUNS_DIR_ENV, SCHEDULES, RunConfig
from workbench.engine.failures import describe_failure, failure_hint, release_memory
from workbench.engine.lr_finder import LRFinderResult, find_lr, suggest_lr
from workbench.engine.run import TERMINAL, Event, Prepared, Run
from workbench.engine.schedule import layer_learning_rates, lr_at
