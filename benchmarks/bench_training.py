"""Training and inference throughput (spectra/s) of the three networks: paper_lib vs bare PyTorch.

paper_lib: ``training.loop.fit`` (fresh batch from a source every step, Gaussian NLL / Eq. 4 loss,
LR schedule, progress bookkeeping) and ``training.loop.predict_scaled``.
bare: the same model class in a plain loop — Adam, random tensors of the same shape, the loss
written inline, ``model(x)`` under ``torch.no_grad`` for inference — no paper_lib machinery.

Both draw their random inputs each step. The training rate of paper_lib is that of its second
epoch (the first one warms up oneDNN), counting the training steps only; per-epoch validation
and checkpoint writing are reported separately. Methods alternate and each rate is the median
of the repeats, to damp the noise of a shared machine.

    python benchmarks/bench_training.py [--profile cpu] [--quick] [--threads N]

The last line is ``ratio: <worst paper_lib rate / bare rate>`` over all networks and modes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from paper_lib.models import build_model
from paper_lib.profiles import get_profile
from paper_lib.training.config import TrainConfig
from paper_lib.training.loop import fit, predict_scaled
from paper_lib.training.runtime import default_cpu_threads, setup_runtime

NETWORKS = ("resnet", "attention", "dae")


class Batch(NamedTuple):
    noisy: torch.Tensor
    clean: torch.Tensor
    labels: torch.Tensor


class RandomSource:
    """Random spectra around 1 and random labels, drawn from the loop's generator."""

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        noisy = torch.from_numpy(1.0 - 0.3 * rng.random((n, 8, 4096), dtype=np.float32))
        return Batch(noisy, noisy, torch.from_numpy(rng.random((n, 4), dtype=np.float32)))


def make_model(network: str, profile, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(network, **getattr(profile, network))


# bare PyTorch


def bare_loss(network: str, output, target: torch.Tensor) -> torch.Tensor:
    if network == "dae":
        return (output - target).square().mean()
    z = torch.linalg.solve_triangular(output.scale_tril, (target - output.mean).unsqueeze(-1), upper=False)
    log_det = torch.log(torch.diagonal(output.scale_tril, dim1=-2, dim2=-1)).sum(-1)
    return (log_det + 0.5 * z.square().sum((-1, -2))).mean()


def bare_train_rate(network: str, profile, batch: int, steps: int) -> float:
    model = make_model(network, profile).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        x = 1.0 - 0.3 * torch.rand(batch, 8, 4096)
        target = x if network == "dae" else torch.rand(batch, 4)
        loss = bare_loss(network, model(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()

    for _ in range(2):  # warm-up (oneDNN primitive creation)
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


@torch.no_grad()
def bare_inference_rate(model: torch.nn.Module, spectra: torch.Tensor, batch: int) -> float:
    model.eval()
    model(spectra[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(spectra), batch):
        model(spectra[i : i + batch])
    return len(spectra) / (time.perf_counter() - start)


# paper_lib


def paper_lib_train_rate(network: str, profile, batch: int, steps: int, threads: int) -> tuple[float, float]:
    """(training spectra/s of the second epoch, seconds of validation + checkpoint per epoch)."""
    model = make_model(network, profile)
    config = TrainConfig(epochs=2, steps_per_epoch=steps, batch_size=batch, lr=1e-4,
                         optimizer="adamw" if network == "dae" else "adam",
                         task="denoising" if network == "dae" else "regression")
    val = RandomSource().sample(4, np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        history = fit(model, RandomSource(), val, config, Path(tmp) / "bench.pt", progress=False, num_threads=threads)
        wall = time.perf_counter() - start
    overhead = (wall - sum(h["train_seconds"] for h in history)) / len(history)
    return history[-1]["spectra_per_s"], overhead


def paper_lib_inference_rate(model: torch.nn.Module, spectra: torch.Tensor, batch: int) -> float:
    predict_scaled(model, spectra[:batch], batch_size=batch)  # warm-up
    start = time.perf_counter()
    predict_scaled(model, spectra, batch_size=batch)
    return len(spectra) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="run profile whose model sizes and batch size to use")
    parser.add_argument("--quick", action="store_true", help="few steps, one repeat (< 1 min on 2 cores)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: paper_lib's choice)")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    threads = args.threads or default_cpu_threads()
    runtime = setup_runtime(threads)
    if runtime.device.type != "cpu":
        print("note: the bare loop runs on the CPU only; use a CPU machine for a fair comparison")
    steps, repeats = (3, 1) if args.quick else (12, 3)
    batch = profile.batch_size
    print(f"profile {profile.name}, device {runtime.device}, torch threads {torch.get_num_threads()}, "
          f"batch {batch}, {steps} timed steps × {repeats} repeat(s)")
    print(f"{'network':10s} {'mode':10s} {'paper_lib':>10s} {'bare':>10s} {'ratio':>6s}   (spectra/s)")
    ratios = []
    for network in NETWORKS:
        ours, bare, overheads = [], [], []
        for repeat in range(repeats):  # alternate which method goes first
            if repeat % 2 == 0:
                bare.append(bare_train_rate(network, profile, batch, steps))
            rate, overhead = paper_lib_train_rate(network, profile, batch, steps, threads)
            ours.append(rate)
            overheads.append(overhead)
            if repeat % 2 == 1:
                bare.append(bare_train_rate(network, profile, batch, steps))
        train = (statistics.median(ours), statistics.median(bare))
        model = make_model(network, profile)
        spectra = RandomSource().sample(batch * (2 if args.quick else 8), np.random.default_rng(1)).noisy
        ours, bare = [], []
        for repeat in range(repeats):
            if repeat % 2 == 0:
                bare.append(bare_inference_rate(model, spectra, batch))
            ours.append(paper_lib_inference_rate(model, spectra, batch))
            if repeat % 2 == 1:
                bare.append(bare_inference_rate(model, spectra, batch))
        infer = (statistics.median(ours), statistics.median(bare))
        for mode, (a, b) in (("train", train), ("inference", infer)):
            ratios.append(a / b)
            print(f"{network:10s} {mode:10s} {a:10.1f} {b:10.1f} {a / b:6.2f}")
        print(f"{network:10s} per-epoch validation (4 spectra) + checkpoint: {statistics.median(overheads):.2f} s")
    print(f"ratio: {min(ratios):.3f}")


if __name__ == "__main__":
    main()
