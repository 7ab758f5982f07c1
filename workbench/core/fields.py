"""Dataclass fields that carry their own help text: one line the CLI prints and the pages show as a tooltip."""

from __future__ import annotations


def help_field(text: str, **kwargs) -> dict:
    return {"metadata": {"help": text}, **kwargs}
