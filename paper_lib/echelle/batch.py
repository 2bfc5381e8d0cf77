"""A batch of spectrum images and their labels: what generators and test sets hand to training."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """A batch of spectrum images and their labels (all torch tensors on one device).

    noisy : (n, 8, 4096) float32 – normalised noisy image, the model input
    clean : (n, 8, 4096) float32 – noise-free image on the same normalisation (DAE target)
    labels : (n, 4) float32 – (Teff, log g, [M/H], v sin i) scaled to [0, 1] (Table 1 ranges)
    labels_physical : (n, 4) float64 – the same in K, dex, dex, km/s
    """

    noisy: torch.Tensor
    clean: torch.Tensor
    labels: torch.Tensor
    labels_physical: torch.Tensor

    def __len__(self) -> int:
        return self.noisy.shape[0]

    def __getitem__(self, index) -> "Batch":
        return Batch(self.noisy[index], self.clean[index], self.labels[index],
                     self.labels_physical[index])

    def to(self, device) -> "Batch":
        return Batch(self.noisy.to(device), self.clean.to(device), self.labels.to(device),
                     self.labels_physical.to(device))
