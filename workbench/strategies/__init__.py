"""Transfer strategies: one module each, registered on import, behind the contract in `base`.

Importing this package imports every strategy module below, in the order the pages and the CLI list them; adding a
strategy is one new module plus one line here.
"""

from workbench.core.errors import StrategyError
from workbench.strategies.base import (
    STRATEGIES,
    Alert,
    Figure,
    NoOptions,
    Objective,
    Panel,
    Strategy,
    Table,
    TrainingContext,
    get_strategy,
    option_fields,
    register,
)
from workbench.strategies.code import StrategyCode, setting
from workbench.strategies.freezing import (
    apply_freezing,
    apply_trainable,
    check_freeze_depth,
    set_train_mode,
    trainable_parameter_count,
    trainable_per_group,
)

from workbench.strategies import linear_probe  # isort: skip
from workbench.strategies import partial  # isort: skip
from workbench.strategies import full  # isort: skip
from workbench.strategies import scratch  # isort: skip
from workbench.strategies import gradual  # isort: skip
from workbench.strategies import discriminative  # isort: skip
from workbench.strategies import l2sp  # isort: skip
from workbench.strategies import bitfit  # isort: skip
from workbench.strategies import distill  # isort: skip
from workbench.strategies import dann  # isort: skip
from workbench.strategies import lpft  # isort: skip
from workbench.strategies import protonet  # isort: skip
from workbench.strategies import multitask  # isort: skip

DEFAULT_STRATEGY = linear_probe.LinearProbe.name
"""What a new run uses until someone chooses: the quickest strategy, and the safest with few images."""
