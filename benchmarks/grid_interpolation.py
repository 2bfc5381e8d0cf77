"""How far the grid's interpolations are from the synthesis between nodes: left-out nodes.

Every node of the grid that has nodes 1 and 3 steps away on both sides along an axis (all
present) is left out and interpolated along that axis from its neighbours two steps apart —
the nodes ±1 step (linear: their mean) and ±3 steps (cubic: the Catmull–Rom weights at the
middle of the coarse cell, :func:`paper_lib.synthetic.grid.catmull_rom_weights`) — and compared
with its own synthesis. Then the same at the axes' ends, where the cubic's outer node is the
linear extrapolation of the two inside it (:meth:`~paper_lib.synthetic.grid.Grid.cubic_weights`):
a node 1 step from the lower end, from the end node and the nodes +1 and +3 steps away. Reported:
the median and 90th percentile of the flux RMS per left-out node, and how often the cubic is
the closer. The coarse cells are twice the grid's, so the errors are those of a grid with
double steps; the ranking of the two interpolations is what carries over.

Last, with ``--emulator`` (default: the shipped ``models/cpu/emulator.pt`` when the grid is the
cpu one), the emulator against the grid in the networks' input space
(:func:`paper_lib.training.emulator.emulator_errors`): at its held-out nodes (its MLP, which
never saw them: the emulator's node table holds them, so there it is the grid), and at 200
cell centres against each interpolation.

    python benchmarks/grid_interpolation.py [--grid FILE] [--emulator FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from paper_lib import paths
from paper_lib.synthetic.grid import AXIS_NAMES, Grid, catmull_rom_weights, load_grid

MIDDLE = catmull_rom_weights([0.5])[0]  # weights of nodes −1, 0, 1, 2 at the middle of cell 0–1


def flux_along(grid, node_index, axis, offsets):
    """Flux (len(offsets), n_wave) of the nodes ``offsets`` steps from ``node_index`` along
    ``axis``, or None if one is off the grid or missing."""
    rows = []
    for offset in offsets:
        index = list(node_index)
        index[axis] += offset
        if not 0 <= index[axis] < grid.row_of.shape[axis] or grid.row_of[tuple(index)] < 0:
            return None
        rows.append(grid.row_of[tuple(index)])
    return grid.flux[rows].astype(np.float64)


def two_step_estimates(outer, low, high, far):
    """Linear and cubic estimates of the node midway between ``low`` and ``high`` (flux of the
    nodes −3, −1, +1, +3 steps from it): the mean of the two, and the Catmull–Rom middle."""
    return (low + high) / 2, MIDDLE @ np.stack([outer, low, high, far])


def left_out_errors(grid, axis, at_end: bool):
    """RMS (n, 2) of the linear and cubic estimates of each left-out node along ``axis``:
    inside (nodes −3, −1, +1, +3 around it) or 1 step from the lower end (−1, +1, +3)."""
    errors = []
    for node_index in np.ndindex(*grid.row_of.shape):
        if at_end and node_index[axis] != 1:
            continue
        flux = flux_along(grid, node_index, axis, (-1, 0, 1, 3) if at_end else (-3, -1, 0, 1, 3))
        if flux is None:
            continue
        if at_end:
            low, truth, high, far = flux
            outer = 2 * low - high  # the end's missing node, extrapolated
        else:
            outer, low, truth, high, far = flux
        linear, cubic = two_step_estimates(outer, low, high, far)
        errors.append([np.sqrt(np.mean((estimate - truth) ** 2)) for estimate in (linear, cubic)])
    return np.array(errors)


def main(argv=None) -> None:
    from paper_lib.profiles import get_profile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default=None, help="a grid file (default: the cpu profile's)")
    parser.add_argument("--emulator", default=None, help="an emulator file of this grid")
    args = parser.parse_args(argv)
    grid = Grid.from_fits(args.grid) if args.grid else load_grid(get_profile("cpu"))
    print(f"grid {grid.source}: {len(grid.labels)} nodes; flux RMS of a left-out node, "
          "interpolated from nodes two steps apart")
    for at_end in (False, True):
        for axis, name in enumerate(AXIS_NAMES):
            errors = left_out_errors(grid, axis, at_end)
            if not len(errors):
                continue
            median, p90 = np.median(errors, axis=0), np.percentile(errors, 90, axis=0)
            print(f"{'at the lower end' if at_end else 'inside':16s} {name:5s} {len(errors):5d} nodes:"
                  f" linear median {median[0]:.2e} (90 % {p90[0]:.2e}), cubic median "
                  f"{median[1]:.2e} (90 % {p90[1]:.2e}); cubic closer for "
                  f"{100 * np.mean(errors[:, 1] < errors[:, 0]):.0f} %, median ratio "
                  f"{np.median(errors[:, 0] / errors[:, 1]):.1f}")
    emulator_file = args.emulator or (None if args.grid else paths.models / "cpu" / "emulator.pt")
    if emulator_file is not None and Path(emulator_file).exists():
        compare_emulator(emulator_file, grid)


def compare_emulator(emulator_file, grid) -> None:
    """Print the emulator's image RMS against the grid at its held-out nodes and at cell
    centres against each interpolation."""
    from paper_lib.models.emulator import load_emulator
    from paper_lib.training.emulator import HELD_FRACTION, emulator_errors, held_out_nodes

    emulator, record = load_emulator(emulator_file)
    held = held_out_nodes(grid, HELD_FRACTION, 0)  # the training's own (train_emulator, seed 0)
    pad = bool(record.get("pad_with_continuum"))
    errors = emulator_errors(emulator, grid, held, pad_with_continuum=pad)
    print(f"emulator {emulator_file}: image RMS at its {errors['n_held']} held-out nodes "
          f"{errors['held_rms']:.1e}; at {errors['n_cells']} cell centres against the linear "
          f"interpolation {errors['cells_rms']:.1e} (worst {errors['cells_worst']:.1e}), against "
          f"the cubic {errors['cells_cubic_rms']:.1e} (worst {errors['cells_cubic_worst']:.1e})")
    held_out_comparison(emulator, grid, held, pad)


def held_out_comparison(emulator, grid, held, pad_with_continuum: bool) -> None:
    """At the emulator's held-out nodes, which its MLP never saw (its nearest training nodes one
    step away), the MLP against the grid's own interpolations across the same gap: the
    node from its neighbours ±1 step (linear) and ±1, ±3 steps (cubic) along each axis where
    they exist; image RMS in the networks' input space, per axis."""
    import torch

    from paper_lib.echelle.generator import SpectrumGenerator
    from paper_lib.training.emulator import normalised_images

    generator = SpectrumGenerator(grid, snr=1.0, seed=0, pad_with_continuum=pad_with_continuum)
    labels = grid.labels[held]
    truth = normalised_images(generator, grid.flux[held], labels)
    with torch.no_grad():
        emulated = emulator.network_only()(torch.as_tensor(labels, dtype=torch.float32)).numpy()
    rms = lambda a, b: np.sqrt(np.mean((a - b) ** 2, axis=(1, 2)))  # noqa: E731
    emulator_rms = rms(normalised_images(generator, emulated, labels), truth)
    print(f"at the {len(held)} held-out nodes, image RMS (median over nodes; each axis where "
          f"the nodes ±1 and ±3 steps exist): the emulator's MLP {np.median(emulator_rms):.1e}")
    for axis, name in enumerate(AXIS_NAMES):
        estimates, kept = [], []
        for k, row in enumerate(held):
            index = np.argwhere(grid.row_of == row)[0]
            flux = flux_along(grid, index, axis, (-3, -1, 1, 3))
            if flux is not None:
                estimates.append(two_step_estimates(*flux))
                kept.append(k)
        if not kept:
            continue
        estimates = np.array(estimates)
        linear, cubic = (rms(normalised_images(generator, estimates[:, j], labels[kept]),
                             truth[kept]) for j in (0, 1))
        print(f"  along {name:5s} ({len(kept)} nodes): linear {np.median(linear):.1e}, cubic "
              f"{np.median(cubic):.1e}, the MLP at the same nodes "
              f"{np.median(emulator_rms[kept]):.1e}; the MLP closer than the cubic "
              f"at {100 * np.mean(emulator_rms[kept] < cubic):.0f} %")


if __name__ == "__main__":
    main()
