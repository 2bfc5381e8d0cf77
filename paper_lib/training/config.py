"""What a training run is for: :class:`TrainConfig` (epochs, steps, batch, optimiser, learning-rate
schedule, task, seed). Read by the loop (:mod:`paper_lib.training.loop`) and recorded in every
checkpoint (:mod:`paper_lib.training.checkpoints`); imports nothing of either."""

from __future__ import annotations

from dataclasses import dataclass

LR_SCHEDULES = ("step", "cosine")
TASKS = ("regression", "denoising")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What to train for. Batch sizes are numbers of spectra (global, over all DDP ranks)."""

    epochs: int
    steps_per_epoch: int
    batch_size: int
    lr: float
    optimizer: str = "adam"  # "adam" or "adamw"
    weight_decay: float = 0.0
    lr_decay_fraction: float = 50 / 750  # last fraction of the optimiser steps at lr × lr_decay_factor
    lr_decay_factor: float = 0.1
    lr_schedule: str = "step"  # "step" (the paper's) or "cosine" (warm-up, then cosine decay)
    warmup_fraction: float = 0.03  # "cosine": first fraction of the steps, lr rising linearly
    lr_final_factor: float = 0.01  # "cosine": lr at the last step / lr
    task: str = "regression"  # "regression" (Gaussian NLL) or "denoising" (Eq. 4)
    seed: int = 2021
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if min(self.epochs, self.steps_per_epoch, self.batch_size, self.eval_batch_size) < 1:
            raise ValueError("epochs, steps_per_epoch, batch_size and eval_batch_size must be ≥ 1")
        if not 0.0 <= self.lr_decay_fraction <= 1.0:
            raise ValueError(f"lr_decay_fraction must lie in [0, 1], got {self.lr_decay_fraction}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must lie in [0, 1), got {self.warmup_fraction}")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def decay_start_step(self) -> int:
        """First optimiser step (0-based) run at the decayed learning rate."""
        return self.total_steps - round(self.lr_decay_fraction * self.total_steps)
