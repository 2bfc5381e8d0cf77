"""The training loop for the three networks: regressors (Gaussian NLL) and the DAE (Eq. 4).

Data are drawn on the fly: every optimiser step asks a *source* for a fresh batch,
``source.sample(n, rng) -> Batch`` with ``rng`` a ``numpy.random.Generator`` and ``Batch``
holding ``.noisy`` (n, 8, 4096) float32 model input, ``.clean`` (n, 8, 4096) noise-free flux
(the DAE target) and ``.labels`` (n, 4) scaled labels. A source must take all its randomness
from ``rng`` (not from torch's or numpy's global generators): that is what makes runs
reproducible and resumable.

Paper §4 settings: Adam, lr 1e-4 for the regressors; AdamW, lr 3e-4 for the DAE (the profile's
``regressor_lr`` / ``dae_lr``, which a short CPU run may raise); lr × 0.1 for
the last ``lr_decay_fraction`` of training (counted in optimiser steps, so it also works when
that fraction is less than one epoch).

Each epoch ends with a validation pass on a fixed batch and an atomic checkpoint
(:mod:`paper_lib.training.checkpoints`). Calling :func:`fit` again with the same checkpoint path
resumes where it stopped; a run that already finished returns at once. Which network, settings
and data a variant of the paper trains with: :mod:`paper_lib.training.variants`.

Device: CUDA (bfloat16 autocast) when available, else CPU with ``torch.set_num_threads`` set to
the cores that other processes leave free (:mod:`paper_lib.training.runtime`; ``OMP_NUM_THREADS`` or
``num_threads=`` override it). Launched under
``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel, each rank
draws its own share of the global batch from its own random stream, the recorded step losses
are those of the global batch (the mean over ranks), rank 0 validates and writes the files, and
at the end every rank holds rank 0's model (BatchNorm statistics included) and history.
"""

from __future__ import annotations

import math

import contextlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from ..losses import check_labels, gaussian_nll, reconstruction_loss
from ..models import unwrap
from ..models.gaussian import GaussianOutput
from .checkpoints import resume, rng_states, save_epoch
from .config import TrainConfig
from .runtime import Runtime, setup_runtime


# pieces of the loop


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (regressors) or AdamW (DAE) over the trainable parameters (a frozen DAE is skipped)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning rate of optimiser step ``step`` (0-based) as a fraction of ``config.lr``.

    ``"step"`` (paper §4): 1, then ``lr_decay_factor`` for the last ``lr_decay_fraction`` of the
    steps. ``"cosine"``: a linear warm-up from ``lr_final_factor`` to 1 over the first
    ``warmup_fraction`` of the steps, then a cosine decay to ``lr_final_factor`` at the last step.
    """
    if config.lr_schedule == "step":
        return 1.0 if step < config.decay_start_step else config.lr_decay_factor
    floor, total = config.lr_final_factor, max(config.total_steps - 1, 1)
    warmup = round(config.warmup_fraction * config.total_steps)
    if step < warmup:
        return floor + (1.0 - floor) * step / warmup
    progress = min(1.0, (step - warmup) / max(total - warmup, 1))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`lr_factor` per optimiser step (stepped after each step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))


def iterate_batches(source, n: int, rng: np.random.Generator, steps: int, pool: ThreadPoolExecutor | None) -> Iterator:
    """Yield ``steps`` fresh batches of ``n`` spectra. With a thread pool the next batch is drawn
    while the caller trains on the current one, but never past ``steps``, so ``rng`` has made
    exactly ``steps`` draws when the iterator is exhausted (checkpoints stay exact)."""
    if pool is None:
        for _ in range(steps):
            yield source.sample(n, rng)
        return
    future = pool.submit(source.sample, n, rng)
    for step in range(steps):
        batch = future.result()
        if step + 1 < steps:
            future = pool.submit(source.sample, n, rng)
        yield batch


def batch_tensors(batch, task: str, device: torch.device) -> tuple[Tensor, Tensor]:
    """(model input, target) of a batch on ``device``: (noisy, labels) or (noisy, clean)."""
    target = batch.labels if task == "regression" else batch.clean
    x = torch.as_tensor(batch.noisy, dtype=torch.float32).to(device, non_blocking=True)
    y = torch.as_tensor(target, dtype=torch.float32).to(device, non_blocking=True)
    return x, y


def compute_loss(output, target: Tensor, task: str) -> Tensor:
    """Gaussian NLL of the scaled labels (regression) or the Eq. 4 pixel MSE (denoising)."""
    if task == "regression":
        return gaussian_nll(output, target)
    return reconstruction_loss(output, target)


def train_step(model: nn.Module, batch, optimizer, scheduler, runtime: Runtime, task: str) -> float:
    """One optimiser step on one batch; returns the loss. Raises FloatingPointError on NaN/inf."""
    x, target = batch_tensors(batch, task, runtime.device)
    with runtime.autocast():
        output = model(x)
    loss = compute_loss(output, target, task)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    value = loss.item()
    if not np.isfinite(value):
        raise FloatingPointError(f"the training loss became {value} at step {scheduler.last_epoch}")
    return value


@torch.no_grad()
def predict_scaled(model: nn.Module, spectra, *, batch_size: int = 64, device: torch.device | str | None = None):
    """Run a model in eval mode on spectra (N, 8, 4096) (tensor or array), in chunks.

    Returns, on the CPU in float32, a :class:`GaussianOutput` (mean (N, 4), scale_tril
    (N, 4, 4), scaled labels) for a regressor, or the denoised spectra (N, 8, 4096) for a DAE.
    ``device`` None: the model's own device. bfloat16 autocast on CUDA.
    """
    model = unwrap(model)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.to(device).eval()
    runtime = Runtime(device=device, amp_dtype=torch.bfloat16 if device.type == "cuda" else None)
    spectra = torch.as_tensor(spectra, dtype=torch.float32)
    if len(spectra) == 0:
        raise ValueError("predict_scaled() got no spectra; expected shape (N ≥ 1, 8, 4096)")
    chunks = []
    for start in range(0, len(spectra), batch_size):
        with runtime.autocast():
            out = model(spectra[start : start + batch_size].to(device, non_blocking=True))
        chunks.append(out.to("cpu", torch.float32))
    model.train(was_training)
    if isinstance(chunks[0], Tensor):
        return torch.cat(chunks)
    return GaussianOutput(torch.cat([c.mean for c in chunks]), torch.cat([c.scale_tril for c in chunks]))


def evaluate(model: nn.Module, val_batch, config: TrainConfig, runtime: Runtime) -> dict:
    """Validation metrics on a fixed batch (eval mode, no gradient).

    regression: ``val_loss`` (NLL, nats), ``val_mse`` (mean squared error of the means, scaled
    labels), ``val_mae`` (4 per-label mean absolute errors, scaled labels).
    denoising: ``val_loss`` (pixel MSE of the output) and ``val_input_mse`` (of the noisy input).
    """
    x, target = batch_tensors(val_batch, config.task, torch.device("cpu"))
    out = predict_scaled(model, x, batch_size=config.eval_batch_size, device=runtime.device)
    if config.task == "denoising":
        return {"val_loss": reconstruction_loss(out, target).item(), "val_input_mse": reconstruction_loss(x, target).item()}
    check_labels(target, len(x))
    err = out.mean - target
    return {
        "val_loss": gaussian_nll(out, target).item(),
        "val_mse": err.square().mean().item(),
        "val_mae": err.abs().mean(dim=0).tolist(),
    }


# the loop


def _gather(obj) -> list:
    """Collect one picklable object from every DDP rank (a 1-list without DDP)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _train_epoch(net, batches, optimizer, scheduler, runtime: Runtime, task: str, bar, epoch: int) -> tuple[list, float]:
    """One optimiser step per batch; returns (the step losses, the lr of the last step)."""
    net.train()
    losses = []
    for batch in batches:
        lr = optimizer.param_groups[0]["lr"]
        losses.append(train_step(net, batch, optimizer, scheduler, runtime, task))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4g}", epoch=epoch + 1, refresh=False)
    return losses, lr


@dataclass
class _Run:
    """What one call of :func:`fit` trains: the model (``net``: DDP-wrapped when distributed),
    its optimiser and schedule, the settings, the data stream and the history so far."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    config: TrainConfig
    runtime: Runtime
    rng: np.random.Generator
    path: Path
    variant: str | None
    history: list = field(default_factory=list)


def fit(
    model: nn.Module,
    source,
    val_batch,
    config: TrainConfig,
    checkpoint_path: str | Path,
    *,
    variant: str | None = None,
    until_epoch: int | None = None,
    progress: bool = True,
    num_threads: int | None = None,
    prefetch: bool | None = None,
) -> list[dict]:
    """Train ``model`` (resuming from ``checkpoint_path`` if it exists); returns the history.

    source: object with ``sample(n, rng) -> Batch`` (see the module docstring).
    val_batch: a fixed Batch for the per-epoch validation.
    until_epoch: stop after this epoch (the lr schedule still follows ``config.epochs``), e.g. to
    split a long run over several sessions; None = train to ``config.epochs``.
    prefetch: draw the next batch in a background thread while training (default: on CUDA, or
    when torch uses fewer threads than there are cores). Results do not depend on it.
    History: one dict per epoch — epoch, lr, train_loss (mean), step_losses, validation
    metrics (see :func:`evaluate`), train_seconds and spectra_per_s (training steps only,
    data generation included), val_seconds.
    """
    run, start_epoch = _start(model, config, Path(checkpoint_path), variant, num_threads)
    last_epoch = config.epochs if until_epoch is None else min(until_epoch, config.epochs)
    if start_epoch >= last_epoch:
        return run.history
    bar = tqdm(total=last_epoch * config.steps_per_epoch, initial=start_epoch * config.steps_per_epoch,
               desc=variant or run.path.stem, disable=not (progress and run.runtime.is_main), mininterval=1.0,
               dynamic_ncols=True)
    with bar, _data_thread(run.runtime, prefetch) as pool:
        for epoch in range(start_epoch, last_epoch):
            _epoch(run, epoch, source, val_batch, pool, bar)
    if run.runtime.world_size > 1:  # every rank returns rank 0's model and history
        for buffer in run.model.buffers():  # BatchNorm statistics: each rank's last batch
            dist.broadcast(buffer, src=0)
        shared = [run.history]
        dist.broadcast_object_list(shared, src=0)
        return shared[0]
    return run.history


def _start(model, config: TrainConfig, path: Path, variant, num_threads) -> tuple[_Run, int]:
    """Set up device, optimiser, schedule and random streams, resume from ``path`` if it
    exists, and wrap the model for DDP; returns the run and the number of epochs done."""
    runtime = setup_runtime(num_threads)
    model = unwrap(model).to(runtime.device)
    if config.batch_size % runtime.world_size:
        raise ValueError(f"batch_size {config.batch_size} does not split over {runtime.world_size} ranks")
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    rng = np.random.default_rng([config.seed, runtime.rank])
    torch.manual_seed(config.seed + runtime.rank)  # dropout
    start_epoch, history = 0, []
    if path.exists():
        start_epoch, history = resume(path, model, optimizer, scheduler, config, runtime, rng)
    net = model
    if runtime.world_size > 1:
        device_ids = [runtime.device] if runtime.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    run = _Run(model, net, optimizer, scheduler, config, runtime, rng, path, variant, history)
    return run, start_epoch


def _data_thread(runtime: Runtime, prefetch: bool | None):
    """A one-thread pool that draws the next batch while training, or a null context.

    By default a data thread pays off on a GPU or when torch leaves a core idle.
    """
    if prefetch is None:
        prefetch = runtime.device.type == "cuda" or torch.get_num_threads() < len(os.sched_getaffinity(0))
    return ThreadPoolExecutor(max_workers=1) if prefetch else contextlib.nullcontext()


def _epoch(run: _Run, epoch: int, source, val_batch, pool, bar) -> None:
    """Train one epoch, then (rank 0) validate, record the history and write the checkpoint."""
    config, runtime = run.config, run.runtime
    t0 = time.perf_counter()
    batches = iterate_batches(source, config.batch_size // runtime.world_size, run.rng,
                              config.steps_per_epoch, pool)
    losses, lr = _train_epoch(run.net, batches, run.optimizer, run.scheduler, runtime, config.task, bar, epoch)
    train_seconds = time.perf_counter() - t0
    gathered = _gather((rng_states(run.rng), losses))  # a collective: every rank takes part
    states = [state for state, _ in gathered]
    if runtime.world_size > 1:  # each rank's loss is of its share: the global batch's is the mean
        losses = np.mean([rank_losses for _, rank_losses in gathered], axis=0).tolist()
    if not runtime.is_main:
        return
    t0 = time.perf_counter()
    metrics = evaluate(run.model, val_batch, config, runtime)
    run.history.append({
        "epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)), "step_losses": losses,
        **metrics, "train_seconds": train_seconds,
        "spectra_per_s": len(losses) * config.batch_size / train_seconds,
        "val_seconds": time.perf_counter() - t0,
    })
    bar.set_postfix(loss=f"{run.history[-1]['train_loss']:.4g}", val=f"{metrics['val_loss']:.4g}", epoch=epoch + 1)
    save_epoch(run.path, run.model, run.optimizer, run.scheduler, config, runtime, states, epoch + 1,
               run.history, run.variant)
