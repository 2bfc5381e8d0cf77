"""Checkpoints of the training loop: write atomically, read back, resume, rebuild a model.

After every epoch :func:`save_epoch` writes an atomic checkpoint (model, optimiser, scheduler,
numpy and torch RNG states, epoch, history) plus the loss history as JSON beside it
(``<name>.pt`` → ``<name>.history.json``). A finished run's checkpoint keeps the weights,
settings and history but drops the optimiser, scheduler and RNG states
(:data:`TRAINING_STATE`): they only serve to resume, and would triple the size of the files that
``models/<profile>/`` commits. :func:`load_model` rebuilds a trained model from its file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..fileio import atomic_path
from ..models import build_from_arch, describe
from .config import TrainConfig
from .runtime import Runtime

CHECKPOINT_FORMAT = "paper_lib-checkpoint-1"
TRAINING_STATE = ("optimizer", "scheduler", "rng")  # needed to resume; dropped once finished


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


def load_variant_file(folder, variant: str, profile_name: str) -> nn.Module:
    """The trained variant ``<folder>/<variant>.pt`` in eval mode; FileNotFoundError says how
    to train it."""
    path = Path(folder) / f"{variant}.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train it with notebooks 02–04 "
                                f"(./run_all.sh --profile {profile_name})")
    return load_model(path).eval()


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


def rng_states(rng: np.random.Generator) -> dict:
    """The numpy, torch and CUDA random states of this rank (saved to resume exactly)."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "cuda": cuda}


def restore_rng(states: list[dict], rank: int, rng: np.random.Generator) -> None:
    """Put this rank's saved random states back (numpy ``rng``, torch, CUDA)."""
    if len(states) <= rank:
        raise ValueError(f"the checkpoint was written by {len(states)} rank(s); cannot resume rank {rank}")
    rng.bit_generator.state = states[rank]["numpy"]
    torch.set_rng_state(states[rank]["torch"])
    if states[rank]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(states[rank]["cuda"])


def resume(path: Path, model, optimizer, scheduler, config: TrainConfig, runtime: Runtime, rng) -> tuple[int, list]:
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
    restore_rng(ckpt["rng"], runtime.rank, rng)
    return ckpt["epoch"], ckpt["history"]


def save_epoch(path: Path, model, optimizer, scheduler, config: TrainConfig, runtime: Runtime, states: list,
               epoch: int, history: list, variant: str | None) -> None:
    """Checkpoint + JSON history after an epoch (rank 0 only)."""
    arch = describe(model)
    state = {
        "variant": variant, "arch": arch, "config": dataclasses.asdict(config), "epoch": epoch,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": states, "history": history, "world_size": runtime.world_size,
    }
    save_checkpoint(path, finished_state(state) if epoch >= config.epochs else state)
    write_history(history_path(path), {
        "variant": variant, "arch": arch, "config": dataclasses.asdict(config), "epochs_done": epoch,
        "device": str(runtime.device), "world_size": runtime.world_size, "torch_threads": torch.get_num_threads(),
        "history": history,
    })
