"""Can the on-the-fly generator keep up with training? Spectra per second of both, on CPU.

Measures :class:`paper_lib.echelle.generator.SpectrumGenerator` on the CPU (batch 32 by default: labels →
grid interpolation → broadening → échelle pixels → slant → noise → normalisation), compiled
where the profile's training generator is (``compile_generator``; the first batch, which
compiles, is timed on its own and left out of the rate), and the
training loop's consumption (``paper_lib.training.loop.train_step`` of
``build_model('resnet', covariance='diagonal', **profile.resnet)``, Adam) on the device the
training loop picks (the CPU here; a GPU where there is one), with the same torch thread count. The last line is ``ratio: <generator rate / training rate>``;
above 1 the generator is not the bottleneck where the training loop can draw the next batch in a
background thread while it trains (on a GPU, or with a core to spare). Where torch already uses
every core the loop generates and trains in series; the ``in series`` line gives that rate.

    python benchmarks/bench_generator.py [--profile cpu] [--quick] [--threads N] [--grid FILE]
                                         [--stages] [--no-compile]

Without ``--grid`` the profile's grid is used if it has been built, else the shared 5030–5370 Å
reference grid padded with continuum to reach the orders (same cost per spectrum).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paper_lib import paths  # noqa: E402
from paper_lib.echelle.generator import SpectrumGenerator  # noqa: E402
from paper_lib.echelle.steps import COMPILED_OBSERVE, COMPILED_RENDER  # noqa: E402
from paper_lib.models import build_model  # noqa: E402
from paper_lib.profiles import get_profile  # noqa: E402
from paper_lib.synthetic.grid import Grid, load_grid  # noqa: E402
from paper_lib.training.config import TrainConfig  # noqa: E402
from paper_lib.training.loop import make_optimizer, make_scheduler, train_step  # noqa: E402
from paper_lib.training.runtime import setup_runtime  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="run profile (smoke, cpu, paper)")
    parser.add_argument("--quick", action="store_true", help="a few repetitions (< 1 minute)")
    parser.add_argument("--batch", type=int, default=32, help="spectra per batch (default 32)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: the training loop's own choice)")
    parser.add_argument("--grid", type=Path, default=None, help="grid FITS file to use")
    parser.add_argument("--stages", action="store_true",
                        help="also print where a batch goes (cProfile of 20 batches)")
    parser.add_argument("--no-compile", action="store_true",
                        help="run the generator eagerly even where the profile compiles it")
    return parser.parse_args(argv)


PIPELINE_FILES = ("generator.py", "steps.py", "grid.py", "layout.py", "continuum.py", "broadening.py",
                  "resample.py")


def print_stages(generator, batch: int, rng, n_batches: int = 20) -> None:
    """cProfile of ``n_batches`` calls of ``generator.sample``, in ms per batch: the pipeline's
    own functions with everything they call (compiled steps included), then the costliest
    single calls by own time (torch.compile's fused C++ loops show as "compiled kernel")."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n_batches):
        generator.sample(batch, rng)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # {(file, line, name): (cc, nc, tottime, cumtime, …)}
    rows = [(Path(file).name, name, tottime, cumtime)
            for (file, _, name), (_, _, tottime, cumtime, _) in stats.items()]
    print(f"where a batch goes ({n_batches} batches of {batch}, ms per batch)")
    print("  pipeline functions, with what they call:")
    pipeline = sorted((row for row in rows if row[0] in PIPELINE_FILES and row[3] > 0),
                      key=lambda row: -row[3])
    for file, name, _, cumtime in pipeline[:10]:
        print(f"  {1e3 * cumtime / n_batches:7.2f} ms  {name} ({file})")
    print("  single calls, own time:")
    for file, name, tottime, _ in sorted(rows, key=lambda row: -row[2])[:10]:
        if name.endswith(".kernel.kernel>"):
            name = f"compiled kernel {name.split()[-1][:8]}…"
        print(f"  {1e3 * tottime / n_batches:7.2f} ms  {name} ({file})")


def open_grid(profile, path: Path | None) -> tuple[Grid, bool, str]:
    """(grid, pad_with_continuum, description) for the benchmark."""
    if path is not None:
        return Grid.from_fits(path), False, str(path)
    try:
        return load_grid(profile), False, f"the {profile.name} profile's grid"
    except FileNotFoundError:
        reference = paths.shared_file("reference_grid/reference_grid.fits")
        return Grid.from_fits(reference), True, f"{reference} (padded with continuum)"


def timed(function, repeats: int) -> float:
    """Median wall time [s] of ``repeats`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None) -> float:
    args = parse_args(argv)
    profile = get_profile(args.profile)
    runtime = setup_runtime(args.threads)  # training runs where the training loop would run
    repeats = 3 if args.quick else 10
    grid, pad, grid_name = open_grid(profile, args.grid)

    compile_ = profile.compile_generator and not args.no_compile
    generator = SpectrumGenerator(
        grid, snr=profile.snr_train, box=profile.label_box or None, slant_max=profile.slant_max,
        seed=profile.seed, pad_with_continuum=pad, compile=compile_,
    )
    rng = np.random.default_rng(profile.seed)
    start = time.perf_counter()
    generator.sample(args.batch, rng)  # node transforms, and the compilation if any
    first_s = time.perf_counter() - start
    generator_s = timed(lambda: generator.sample(args.batch, rng), repeats)
    if args.stages:
        print_stages(generator, args.batch, rng)

    torch.manual_seed(profile.seed)
    model = build_model("resnet", covariance="diagonal", **profile.resnet).to(runtime.device)
    model.train()
    config = TrainConfig(epochs=1, steps_per_epoch=10 * repeats, batch_size=args.batch, lr=1e-4)
    optimizer, batch = make_optimizer(model, config), generator.sample(args.batch, rng)
    scheduler = make_scheduler(optimizer, config)
    train_s = timed(lambda: train_step(model, batch, optimizer, scheduler, runtime, "regression"),
                    repeats)

    generator_rate, training_rate = args.batch / generator_s, args.batch / train_s
    print(f"profile: {profile.name}; grid: {grid_name}; batch: {args.batch}; "
          f"torch threads: {torch.get_num_threads()}; repeats: {repeats}")
    failed = compile_ and (COMPILED_OBSERVE.failed or COMPILED_RENDER.failed)
    mode = ("torch.compile failed, eager" if failed else "compiled" if compile_ else "eager")
    print(f"generator: {generator_rate:8.1f} spectra/s  ({generator_s * 1e3:.0f} ms per batch, "
          f"{mode}; first batch {first_s:.1f} s)")
    print(f"training:  {training_rate:8.1f} spectra/s  ({train_s * 1e3:.0f} ms per step on "
          f"{runtime.device}, ResNet {profile.resnet})")
    serial_rate = 1.0 / (1.0 / generator_rate + 1.0 / training_rate)
    print(f"in series: {serial_rate:8.1f} spectra/s  (generating and training one after the "
          f"other, as the training loop does when torch uses every core; "
          f"{100 * training_rate / (generator_rate + training_rate):.0f} % of the time generating)")
    ratio = generator_rate / training_rate
    print(f"ratio: {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
