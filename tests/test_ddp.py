"""DistributedDataParallel for real: ``torchrun --nproc_per_node 2`` (gloo, CPU) runs
tests/ddp_fit.py, a few steps of a tiny ResNet through ``fit``; both ranks must end with the same
model and history, the checkpoint must resume exactly, and training on one fixed global batch
must match a single process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from paper_lib.training.checkpoints import load_checkpoint, load_model
from paper_lib.training.loop import fit

from .ddp_fit import CONFIG, RankShards, new_model, twin_batch, validation_batch

SCRIPT = Path(__file__).with_name("ddp_fit.py")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(SCRIPT), str(out)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_ranks_agree_on_model_and_history(ddp_run):
    _, (rank0, rank1) = ddp_run
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["digests"] == rank1["digests"]  # parameters and BatchNorm statistics
    for run in ("straight", "split", "shards"):
        assert rank0[run] == rank1[run] and [h["epoch"] for h in rank0[run]] == [1, 2]
    assert load_checkpoint(ddp_run[0] / "straight.pt")["world_size"] == 2


def test_checkpoint_resumes_exactly_under_ddp(ddp_run):
    out, (rank0, _) = ddp_run
    for a, b in zip(rank0["straight"], rank0["split"]):
        np.testing.assert_allclose(b["step_losses"], a["step_losses"], rtol=1e-6)
        np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=1e-6)
    straight, split = (load_model(out / f"{name}.pt").state_dict() for name in ("straight", "split"))
    for key in straight:
        torch.testing.assert_close(split[key], straight[key], rtol=1e-6, atol=1e-7)


def test_ddp_matches_a_single_process_on_the_same_global_batch(ddp_run, tmp_path):
    """Losses and validation metrics agree to 1e-4. The weights themselves are not compared:
    Adam divides each gradient by its own RMS, so rounding differences in near-zero gradients
    (gloo's all-reduce sums in another order) become full-size steps of single weights."""
    _, (rank0, _) = ddp_run
    single = fit(new_model(), RankShards(twin_batch()), validation_batch(), CONFIG,
                 tmp_path / "single.pt", progress=False, num_threads=1)
    for ours, theirs in zip(single, rank0["shards"]):
        np.testing.assert_allclose(theirs["step_losses"], ours["step_losses"], rtol=1e-4)
        for key in ("val_loss", "val_mse", "val_mae"):
            np.testing.assert_allclose(theirs[key], ours[key], rtol=1e-4, atol=1e-6)
