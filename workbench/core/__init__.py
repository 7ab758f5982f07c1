"""The shared vocabulary every layer may use: exceptions, metrics, normalisation, latency, the run folder's format.

Nothing here imports another part of the workbench.
"""
