"""Run under ``torchrun --nproc_per_node 2`` by tests/test_ddp.py (gloo, CPU): a few training
steps of a tiny ResNet through :func:`paper_lib.training.loop.fit`, three ways:

* ``straight``: each rank draws its half of every batch from its own random stream;
* ``split``: the same run stopped after epoch 1 and resumed from its checkpoint;
* ``shards``: each rank gets its rows of one fixed global batch (:class:`RankShards`), which a
  single process can train on too, for the comparison.

Each rank writes ``rank<r>.json`` (the histories fit returned, a digest of its final model)
into the folder given as the only argument.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paper_lib.models import build_model  # noqa: E402
from paper_lib.training.config import TrainConfig  # noqa: E402
from paper_lib.training.loop import fit  # noqa: E402
from tests.conftest import TINY, Batch, LineSource  # noqa: E402

CONFIG = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=4, lr=1e-3, lr_decay_fraction=0.34, seed=7)


class RankShards:
    """Rank r's rows [r n, (r + 1) n) of a fixed global batch (all of it in a single process)."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        rank = dist.get_rank() if dist.is_initialized() else 0
        return Batch(*(t[rank * n:(rank + 1) * n] for t in self.batch))


def twin_batch() -> Batch:
    """A global batch [A, A]: each rank's BatchNorm then sees the global batch's statistics,
    so DDP must reproduce the single-process run up to rounding (BatchNorm is per rank)."""
    half = LineSource().sample(CONFIG.batch_size // 2, np.random.default_rng(5))
    return Batch(*(torch.cat([t, t]) for t in half))


def validation_batch() -> Batch:
    return LineSource().sample(6, np.random.default_rng(123))


def new_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("resnet", **TINY["resnet"])


def digest(model) -> str:
    """SHA-256 of every parameter and buffer."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(out: Path) -> None:
    val = validation_batch()
    kwargs = {"progress": False, "num_threads": 1}
    record, models = {}, {"straight": new_model(), "split": new_model(), "shards": new_model()}
    record["straight"] = fit(models["straight"], LineSource(), val, CONFIG, out / "straight.pt", **kwargs)
    fit(models["split"], LineSource(), val, CONFIG, out / "split.pt", until_epoch=1, **kwargs)
    models["split"] = new_model(seed=99)  # the weights must come from the checkpoint
    record["split"] = fit(models["split"], LineSource(), val, CONFIG, out / "split.pt", **kwargs)
    record["shards"] = fit(models["shards"], RankShards(twin_batch()), val, CONFIG, out / "shards.pt", **kwargs)
    record["digests"] = {name: digest(model) for name, model in models.items()}
    record["world_size"] = dist.get_world_size()
    (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
