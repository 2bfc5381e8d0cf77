"""One training loop for the three networks: regressors (Gaussian NLL) and the DAE (Eq. 4).

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

Each epoch ends with a validation pass on a fixed batch and an atomic checkpoint (model,
optimiser, scheduler, numpy and torch RNG states, epoch, history) plus the loss history as
JSON beside it (``<name>.pt`` → ``<name>.history.json``). Calling :func:`fit` again with the
same checkpoint path resumes where it stopped; a run that already finished returns at once.
A finished run's checkpoint keeps the weights, settings and history but drops the optimiser,
scheduler and RNG states (:data:`TRAINING_STATE`): they only serve to resume, and would
triple the size of the files that ``models/<profile>/`` commits.

Device: CUDA (bfloat16 autocast) when available, else CPU with ``torch.set_num_threads`` set to
the cores that other processes leave free (:func:`default_cpu_threads`; ``OMP_NUM_THREADS`` or
``num_threads=`` override it). Launched under
``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel, each rank
draws its own share of the global batch from its own random stream, and rank 0 validates and
writes the files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from paper_lib.fileio import atomic_path
from paper_lib.losses import (
    GaussianOutput,
    check_labels,
    gaussian_nll,
    reconstruction_loss,
)
from paper_lib.models import (
    DenoisedRegressor,
    build_from_arch,
    build_model,
    describe,
    unwrap,
)
from paper_lib.profiles import Profile, get_profile

CHECKPOINT_FORMAT = "paper_lib-checkpoint-1"
TRAINING_STATE = ("optimizer", "scheduler", "rng")  # needed to resume; dropped once finished
TASKS = ("regression", "denoising")
VARIANT_PATTERN = re.compile(r"^(resnet|attention)_(diagonal|full)(_dae)?(_limited)?$")


# configuration


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

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def decay_start_step(self) -> int:
        """First optimiser step (0-based) run at the decayed learning rate."""
        return self.total_steps - round(self.lr_decay_fraction * self.total_steps)


class Variant(NamedTuple):
    """A parsed variant name ``<network>_<covariance>[_dae][_limited]`` (or ``dae``)."""

    name: str
    network: str  # "resnet", "attention" or "dae"
    covariance: str | None
    dae: bool  # regressor behind the frozen DAE
    limited: bool  # trained on the limited T_eff range (paper's † rows)

    @property
    def base(self) -> str:
        """The same regressor without the DAE, e.g. ``resnet_full_dae`` → ``resnet_full``."""
        return self.name.replace("_dae", "")


def parse_variant(name: str) -> Variant:
    """``"attention_full_dae"`` → Variant(network="attention", covariance="full", dae=True, …)."""
    if name == "dae":
        return Variant(name, "dae", None, False, False)
    match = VARIANT_PATTERN.match(name)
    if match is None:
        raise ValueError(f"unknown variant {name!r}; expected 'dae' or <resnet|attention>_<diagonal|full>[_dae][_limited]")
    network, covariance, dae, limited = match.groups()
    return Variant(name, network, covariance, dae is not None, limited is not None)


# runtime


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Where this process trains: device, autocast dtype (None = float32) and DDP rank."""

    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def default_cpu_threads(local_world_size: int = 1) -> int:
    """Torch threads for this process: the cores it may use (shared among the local DDP ranks),
    less the cores other processes keep busy (1-minute load average, one unit assumed ours).

    More threads than free cores is far worse than fewer: OpenMP threads spin-wait on each
    other, and on a 2-core machine with a busy neighbour 2 threads trained 4–25× slower than 1.
    """
    cores = max(1, len(os.sched_getaffinity(0)) // max(1, local_world_size))
    busy_elsewhere = max(0.0, os.getloadavg()[0] - 1.0)
    return max(1, min(cores, int(len(os.sched_getaffinity(0)) - busy_elsewhere + 0.5)))


def setup_runtime(num_threads: int | None = None) -> Runtime:
    """Pick the device (CUDA + bf16 autocast, else CPU), set CPU threads, join DDP under torchrun.

    num_threads: CPU threads for torch; None = :func:`default_cpu_threads`, unless
    OMP_NUM_THREADS is set (then torch's choice is kept).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    else:
        device, amp_dtype = torch.device("cpu"), None
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    elif device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(default_cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(device=device, amp_dtype=amp_dtype, rank=rank, world_size=world_size)


# pieces of the loop


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (regressors) or AdamW (DAE) over the trainable parameters (a frozen DAE is skipped)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Constant lr, then × lr_decay_factor from ``config.decay_start_step`` on; stepped per step."""
    start, factor = config.decay_start_step, config.lr_decay_factor
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 if step < start else factor)


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
def predict(model: nn.Module, spectra, *, batch_size: int = 64, device: torch.device | str | None = None):
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
        raise ValueError("predict() got no spectra; expected shape (N ≥ 1, 8, 4096)")
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
    out = predict(model, x, batch_size=config.eval_batch_size, device=runtime.device)
    if config.task == "denoising":
        return {"val_loss": reconstruction_loss(out, target).item(), "val_input_mse": reconstruction_loss(x, target).item()}
    check_labels(target, len(x))
    err = out.mean - target
    return {
        "val_loss": gaussian_nll(out, target).item(),
        "val_mse": err.square().mean().item(),
        "val_mae": err.abs().mean(dim=0).tolist(),
    }


# checkpoints


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it over ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def history_path(checkpoint_path: str | Path) -> Path:
    """``models/resnet_full.pt`` → ``models/resnet_full.history.json``."""
    return Path(checkpoint_path).with_suffix(".history.json")


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write a checkpoint dict atomically (temporary file + os.replace)."""
    _atomic_write(Path(path), lambda f: torch.save({"format": CHECKPOINT_FORMAT, **state}, f))


def finished_state(ckpt: dict) -> dict:
    """A checkpoint dict without the state that only resuming needs (:data:`TRAINING_STATE`)."""
    return {key: value for key, value in ckpt.items() if key not in (*TRAINING_STATE, "format")}


def write_history(path: str | Path, record: dict) -> None:
    """Write the JSON history record atomically."""
    text = json.dumps(record, indent=1)
    _atomic_write(Path(path), lambda f: f.write(text.encode()))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a paper_lib checkpoint. FileNotFoundError if absent; ValueError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise ValueError(f"{path} is not a readable paper_lib checkpoint (corrupt, truncated or another format): {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a paper_lib checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return ckpt


def arch_summary(arch: dict) -> str:
    """Short text for an architecture record, e.g. "'resnet' network with 'full' covariance"."""
    if arch.get("kind") == "denoised":
        return f"DAE + {arch_summary(arch['regressor'])}"
    if arch.get("kind") == "dae":
        return f"'dae' network {arch.get('kwargs')}"
    return f"'{arch.get('kind')}' network with '{arch.get('covariance')}' covariance {arch.get('kwargs')}"


def check_arch(expected: dict, found: dict, path: str | Path) -> None:
    """ValueError when a checkpoint's architecture differs from the model's."""
    if json.loads(json.dumps(expected)) != json.loads(json.dumps(found)):
        raise ValueError(
            f"checkpoint {path} holds a {arch_summary(found)}, which does not match the requested "
            f"{arch_summary(expected)}; use another output folder or delete the checkpoint"
        )


def load_model(
    path: str | Path,
    *,
    kind: str | None = None,
    covariance: str | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild a trained model (eval mode) from a checkpoint written by :func:`fit`.

    kind ('resnet', 'attention', 'dae' or 'denoised') and covariance ('diagonal', 'full'), when
    given, must match what the checkpoint holds, else ValueError. Also ValueError for corrupt
    or foreign files and weights that do not fit the recorded architecture.
    """
    ckpt = load_checkpoint(path, map_location)
    arch = ckpt["arch"]
    if kind is not None and arch.get("kind") != kind:
        raise ValueError(f"checkpoint {path} holds a {arch_summary(arch)}, not a {kind!r} network")
    if covariance is not None and arch.get("covariance") != covariance:
        raise ValueError(f"checkpoint {path} holds a {arch_summary(arch)}, not one with {covariance!r} covariance")
    model = build_from_arch(arch)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit its recorded architecture: {err}") from err
    return model.to(map_location).eval()


# the loop


def _gather(obj) -> list:
    """Collect one picklable object from every DDP rank (a 1-list without DDP)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _rng_states(rng: np.random.Generator) -> dict:
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "cuda": cuda}


def _restore_rng(states: list[dict], rank: int, rng: np.random.Generator) -> None:
    if len(states) <= rank:
        raise ValueError(f"the checkpoint was written by {len(states)} rank(s); cannot resume rank {rank}")
    rng.bit_generator.state = states[rank]["numpy"]
    torch.set_rng_state(states[rank]["torch"])
    if states[rank]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(states[rank]["cuda"])


def _resume(path: Path, model, optimizer, scheduler, config: TrainConfig, runtime: Runtime, rng) -> tuple[int, list]:
    """Load a checkpoint into the training state; returns (epochs done, history)."""
    ckpt = load_checkpoint(path, runtime.device)
    check_arch(describe(model), ckpt["arch"], path)
    saved = {k: v for k, v in ckpt["config"].items() if k != "epochs"}
    wanted = {k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"}
    if saved != wanted:
        diff = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
        raise ValueError(f"checkpoint {path} was trained with other settings (saved, now): {diff}; use another output folder")
    if ckpt["world_size"] != runtime.world_size:
        raise ValueError(f"checkpoint {path} was written by {ckpt['world_size']} rank(s), this run has {runtime.world_size}")
    model.load_state_dict(ckpt["model"])
    if ckpt["epoch"] >= config.epochs:  # finished: nothing left to resume
        if runtime.is_main and any(key in ckpt for key in TRAINING_STATE):  # written before slimming
            save_checkpoint(path, finished_state(ckpt))
        return ckpt["epoch"], ckpt["history"]
    if not all(key in ckpt for key in TRAINING_STATE):
        raise ValueError(f"checkpoint {path} holds the weights of a finished {ckpt['epoch']}-epoch run "
                         f"but no optimiser state, so it cannot train on to {config.epochs} epochs; "
                         f"delete it or use another output folder")
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    _restore_rng(ckpt["rng"], runtime.rank, rng)
    return ckpt["epoch"], ckpt["history"]


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
    runtime = setup_runtime(num_threads)
    path = Path(checkpoint_path)
    model = unwrap(model).to(runtime.device)
    if config.batch_size % runtime.world_size:
        raise ValueError(f"batch_size {config.batch_size} does not split over {runtime.world_size} ranks")
    per_rank = config.batch_size // runtime.world_size
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    rng = np.random.default_rng([config.seed, runtime.rank])
    torch.manual_seed(config.seed + runtime.rank)  # dropout
    start_epoch, history = 0, []
    if path.exists():
        start_epoch, history = _resume(path, model, optimizer, scheduler, config, runtime, rng)
    last_epoch = config.epochs if until_epoch is None else min(until_epoch, config.epochs)
    if start_epoch >= last_epoch:
        return history
    net = model
    if runtime.world_size > 1:
        device_ids = [runtime.device] if runtime.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if prefetch is None:  # a data thread pays off on a GPU or when torch leaves a core idle
        prefetch = runtime.device.type == "cuda" or torch.get_num_threads() < len(os.sched_getaffinity(0))
    bar = tqdm(total=last_epoch * config.steps_per_epoch, initial=start_epoch * config.steps_per_epoch,
               desc=variant or path.stem, disable=not (progress and runtime.is_main), mininterval=1.0, dynamic_ncols=True)
    with bar, ThreadPoolExecutor(max_workers=1) if prefetch else contextlib.nullcontext() as pool:
        for epoch in range(start_epoch, last_epoch):
            t0 = time.perf_counter()
            batches = iterate_batches(source, per_rank, rng, config.steps_per_epoch, pool)
            losses, lr = _train_epoch(net, batches, optimizer, scheduler, runtime, config.task, bar, epoch)
            train_seconds = time.perf_counter() - t0
            rng_states = _gather(_rng_states(rng))  # a collective: every rank takes part
            if runtime.is_main:
                t0 = time.perf_counter()
                metrics = evaluate(model, val_batch, config, runtime)
                history.append({
                    "epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)), "step_losses": losses,
                    **metrics, "train_seconds": train_seconds,
                    "spectra_per_s": len(losses) * config.batch_size / train_seconds,
                    "val_seconds": time.perf_counter() - t0,
                })
                bar.set_postfix(loss=f"{history[-1]['train_loss']:.4g}", val=f"{metrics['val_loss']:.4g}", epoch=epoch + 1)
                _save_epoch(path, model, optimizer, scheduler, config, runtime, rng_states, epoch + 1, history, variant)
    if runtime.world_size > 1:  # every rank returns rank 0's history
        shared = [history]
        dist.broadcast_object_list(shared, src=0)
        history = shared[0]
    return history


def _save_epoch(path, model, optimizer, scheduler, config, runtime, rng_states, epoch, history, variant) -> None:
    """Checkpoint + JSON history after an epoch (rank 0 only)."""
    arch = describe(model)
    state = {
        "variant": variant, "arch": arch, "config": dataclasses.asdict(config), "epoch": epoch,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": rng_states, "history": history, "world_size": runtime.world_size,
    }
    save_checkpoint(path, finished_state(state) if epoch >= config.epochs else state)
    write_history(history_path(path), {
        "variant": variant, "arch": arch, "config": dataclasses.asdict(config), "epochs_done": epoch,
        "device": str(runtime.device), "world_size": runtime.world_size, "torch_threads": torch.get_num_threads(),
        "history": history,
    })


# entry point for the notebooks


class TrainResult(NamedTuple):
    model: nn.Module  # trained, eval mode
    history: list  # one dict per epoch, see fit()
    checkpoint: Path


def variant_config(variant: Variant, profile: Profile, *, lr: float | None = None, finetune: bool = False) -> TrainConfig:
    """The TrainConfig of a variant under a profile: paper §4 optimisers (Adam for regressors,
    AdamW for the DAE) at ``profile.regressor_lr`` / ``profile.dae_lr`` unless ``lr`` is given."""
    common = {"steps_per_epoch": profile.steps_per_epoch, "batch_size": profile.batch_size,
              "lr_decay_fraction": profile.lr_decay_fraction, "seed": profile.seed}
    if variant.network == "dae":
        return TrainConfig(epochs=profile.dae_epochs, lr=lr or profile.dae_lr, optimizer="adamw", weight_decay=0.01,
                           task="denoising", **common)
    epochs = profile.finetune_epochs if finetune else profile.epochs
    return TrainConfig(epochs=epochs, lr=lr or profile.regressor_lr, optimizer="adam", task="regression", **common)


def _load_dae(dae) -> nn.Module:
    if isinstance(dae, (str, Path)):
        return load_model(dae, kind="dae")
    if dae is None or describe(dae)["kind"] != "dae":
        raise ValueError("a '_dae' variant needs dae= a trained DenoisingAutoencoder or the path of its checkpoint")
    return dae


def _init_from_base(regressor: nn.Module, base: Path) -> None:
    """Copy the weights of a trained regressor checkpoint (same architecture) into ``regressor``."""
    trained = load_model(base)
    check_arch(describe(regressor), describe(trained), base)
    regressor.load_state_dict(trained.state_dict())


def train_variant(
    variant: str,
    profile: str | Profile,
    source,
    val_batch,
    out_dir: str | Path,
    *,
    dae: nn.Module | str | Path | None = None,
    init_from: str | Path | None = None,
    lr: float | None = None,
    until_epoch: int | None = None,
    progress: bool = True,
    num_threads: int | None = None,
) -> TrainResult:
    """Train (or resume, or just load) one variant of the paper; checkpoint ``out_dir/<variant>.pt``.

    variant: 'dae' or ``<resnet|attention>_<diagonal|full>[_dae][_limited]`` (profiles.ALL_VARIANTS).
    source / val_batch: training source and fixed validation Batch; for ``_limited`` variants
    the caller passes a source restricted to ``profile.limited_teff`` at ``profile.snr_limited``.
    dae: for ``_dae`` variants, the trained DAE (module or checkpoint path); it is frozen.
    init_from: for ``_dae`` variants, the checkpoint of the regressor to fine-tune behind the DAE
    for ``profile.finetune_epochs``; default ``out_dir/<variant without _dae>.pt`` if it exists,
    else the regressor is trained from scratch for ``profile.epochs`` (with a warning).
    lr: override the profile's learning rate (``regressor_lr`` or ``dae_lr``; paper 1e-4 / 3e-4).
    Model sizes come from ``profile.resnet`` / ``profile.attention`` / ``profile.dae``.
    """
    profile = get_profile(profile)
    spec = parse_variant(variant)
    out_dir = Path(out_dir)
    checkpoint = out_dir / f"{variant}.pt"
    torch.manual_seed(profile.seed)  # same initial weights on every run and every rank
    if spec.network == "dae":
        model = build_model("dae", **profile.dae)
        config = variant_config(spec, profile, lr=lr)
    else:
        model = build_model(spec.network, covariance=spec.covariance, **getattr(profile, spec.network))
        finetune = False
        if spec.dae:
            base = Path(init_from) if init_from is not None else out_dir / f"{spec.base}.pt"
            if base.exists():
                _init_from_base(model, base)
                finetune = True
            elif init_from is not None:
                raise FileNotFoundError(f"init_from checkpoint {base} does not exist")
            else:
                warnings.warn(f"{base} not found: training {variant} from scratch for {profile.epochs} epochs", stacklevel=2)
            model = DenoisedRegressor(_load_dae(dae), model)
        config = variant_config(spec, profile, lr=lr, finetune=finetune)
    history = fit(model, source, val_batch, config, checkpoint, variant=variant,
                  until_epoch=until_epoch, progress=progress, num_threads=num_threads)
    return TrainResult(unwrap(model).eval(), history, checkpoint)
