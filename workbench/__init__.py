"""The Transfer Learning Workbench library: everything the Streamlit pages and `python -m workbench` run.

It is built in layers, lowest first; a module imports only from its own layer or lower ones, and never in a circle
(`tests/test_layers.py` checks both on every test run):

- `core`: the shared vocabulary: exceptions, metrics, normalisation, latency, plot style, the run folder's format.
- `data`: image folders and zips read safely, the health report, the decoded-image cache, augmentation presets.
- `models`: timm backbones with the best weights available, their layer groups; a trained model saved and loaded.
- `strategies`: the strategy contract (`strategies.base`) and one registered module per transfer strategy.
- `engine`: `RunConfig`, `Run` (prepare, train, record) and the training loops, which reach a strategy only through
  its hooks; the learning-rate finder.
- `runs`: run folders read back as typed records, the registry that queues and trains runs, background jobs.
- `analysis`: charts, insight into a trained model, time estimates, few-shot prototypes.
- `deploy`: export zips, "show me the code" scripts, compressed variants.
- `lessons`: ready-made experiments that teach transfer learning, explained from their own runs' numbers.
- `cli`: the command line (`cli.py`, `__main__.py`).

This module imports nothing, so any layer may read `LAYERS`.
"""

LAYERS = ("core", "data", "models", "strategies", "engine", "runs", "analysis", "deploy", "lessons", "cli")
"""The layers, lowest first: `workbench.<layer>` (a sub-package, or for `cli` the modules `cli` and `__main__`)."""
