"""Normalisation on the device: the last step of every preprocessing path (training, evaluation, prediction)."""

from __future__ import annotations

import torch


class Normalizer:
    """uint8 NCHW batch -> normalised float batch on the device, in channels_last (faster convolutions on CPU too)."""

    def __init__(self, mean, std, device: torch.device):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.device = device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True).float()
        return ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
