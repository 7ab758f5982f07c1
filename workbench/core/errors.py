"""Exceptions every layer shares: how a Stop press and a diverged run travel up through the loops."""

from __future__ import annotations


class StopRequested(Exception):
    """Raised inside the loop when the user pressed Stop; the run ends cleanly and keeps what it learned."""


class Diverged(Exception):
    """The loss became NaN or infinite: training cannot recover, so the run ends and keeps its last good epoch."""


class StrategyError(ValueError):
    """An unknown strategy or an option that does not fit the chosen model."""
