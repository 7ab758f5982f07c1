"""Looking at runs: charts, insight into a trained model, time estimates, few-shot prototypes and the
data-efficiency curve.
"""
