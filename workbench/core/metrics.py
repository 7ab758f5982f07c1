"""Classification metrics that every layer reports the same way."""

from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Rows are true classes, columns predicted classes."""
    flat = targets * num_classes + preds
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).tolist()


def per_class_report(matrix: list[list[int]], class_names: list[str]) -> dict[str, dict[str, float]]:
    m = np.asarray(matrix, dtype=float)
    tp = np.diag(m)
    precision = np.divide(tp, m.sum(0), out=np.zeros_like(tp), where=m.sum(0) > 0)
    recall = np.divide(tp, m.sum(1), out=np.zeros_like(tp), where=m.sum(1) > 0)
    return {name: {"precision": float(p), "recall": float(r), "support": int(s)}
            for name, p, r, s in zip(class_names, precision, recall, m.sum(1), strict=False)}
