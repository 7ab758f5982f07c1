"""The look every chart shares (template, margins, legend, colours, the epoch axis), so strategies' own charts match
the common ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import plotly.graph_objects as go

TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#ff7f0e"
# Legends go under the plot, clear of the x axis title.
LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=40, b=10),
              legend=dict(orientation="h", yanchor="top", y=-0.28))


def epoch_axis(fig: go.Figure, positions: list[float], planned: int | None = None) -> None:
    """x axis in epochs from 0 (to the planned number, so a live run fills it in from the left); whole-epoch ticks
    when there are few, rather than '0.2 epoch' ticks."""
    last = planned or max(positions, default=0)
    fig.update_xaxes(title_text="epoch", rangemode="tozero", dtick=1 if 0 < last <= 10 else None)
    if planned:
        fig.update_xaxes(range=[0, planned * 1.02])
