"""The grid object: interpolation, holes, sampling, label scaling."""

from __future__ import annotations

import numpy as np
import pytest

from paper_lib.labels import scale_labels, table1_axis, unscale_labels
from paper_lib.synthetic.grid import Grid, OutsideGridError


def linear_grid(drop=()):
    """A grid over a 3×2×2 block whose 'flux' is linear in the labels (so trilinear is exact)."""
    nodes = [(t, g, m) for t in (5500.0, 5750.0, 6000.0) for g in (4.0, 4.5) for m in (-0.5, 0.0)]
    nodes = [n for n in nodes if n not in drop]
    labels = np.array(nodes)
    wave = np.linspace(5020, 5400, 5)
    coeff = np.array([1e-4, 0.1, 0.3])
    flux = (labels @ coeff)[:, None] * np.linspace(1, 2, 5)[None, :]
    return Grid(wave, labels, flux.astype(np.float32)), coeff


def test_exact_at_nodes():
    grid, _ = linear_grid()
    for row, label in enumerate(grid.labels):
        np.testing.assert_array_equal(grid.interpolate(label), grid.flux[row])


def test_linear_between_nodes():
    grid, coeff = linear_grid()
    rng = np.random.default_rng(1)
    points = rng.uniform([5500, 4.0, -0.5], [6000, 4.5, 0.0], size=(50, 3))
    expected = (points @ coeff)[:, None] * np.linspace(1, 2, 5)[None, :]
    np.testing.assert_allclose(grid.interpolate(points), expected, rtol=1e-5)
    a, b = grid.labels[0], grid.labels[-1]
    mid = grid.interpolate((a + b) / 2)
    np.testing.assert_allclose(mid, (grid.interpolate(a) + grid.interpolate(b)) / 2, rtol=1e-5)


def test_corner_weights_mix_the_surrounding_nodes():
    grid, _ = linear_grid(drop=[(6000.0, 4.5, 0.0)])
    # the last point is a node beside the hole: the missing node is a corner of zero weight
    points = np.array([[5600.0, 4.2, -0.3], [5750.0, 4.0, -0.5], [6000.0, 4.0, -0.5]])
    rows, weights = grid.corner_weights(points)
    assert rows.shape == weights.shape == (3, 8)
    np.testing.assert_allclose(weights.sum(1), 1.0)
    mixed = np.einsum("nk,nkw->nw", weights, grid.flux[rows])
    np.testing.assert_allclose(mixed, grid.interpolate(points), rtol=1e-6)
    assert weights[1].max() == 1.0 and weights[2].max() == 1.0  # nodes: one corner carries all
    with pytest.raises(OutsideGridError, match=r"\(6000, 4.5, \+0\)"):
        grid.corner_weights(np.array([[5900.0, 4.3, -0.2]]))
    with pytest.raises(OutsideGridError, match="NaN"):
        grid.corner_weights(np.array([[np.nan, 4.2, -0.3]]))


def test_refuses_holes_naming_missing_nodes():
    grid, _ = linear_grid(drop=[(6000.0, 4.5, 0.0)])
    with pytest.raises(OutsideGridError, match=r"missing node\(s\) \(6000, 4.5, \+0\)"):
        grid.interpolate([5900.0, 4.3, -0.2])
    grid.interpolate([5600.0, 4.3, -0.2])  # the other cell is complete
    grid.interpolate([6000.0, 4.0, -0.5])  # a node beside the hole is still exact


def test_refuses_points_outside():
    grid, _ = linear_grid()
    with pytest.raises(OutsideGridError, match="outside the grid: teff"):
        grid.interpolate([3000.0, 4.0, 0.0])
    with pytest.raises(OutsideGridError, match="hole"):
        grid.interpolate([5000.0, 4.0, 0.0])  # inside Table 1, not in this small grid
    with pytest.raises(OutsideGridError, match="NaN"):
        grid.interpolate([np.nan, 4.0, 0.0])


def test_sampler_stays_in_valid_cells():
    grid, _ = linear_grid(drop=[(6000.0, 4.5, 0.0)])
    labels = grid.sample_labels(500, np.random.default_rng(0))
    assert labels.shape == (500, 3)
    assert np.all(labels[:, 0] <= 5750.0 + 1e-9)  # only the complete cell
    grid.interpolate(labels)
    again = grid.sample_labels(500, np.random.default_rng(0))
    np.testing.assert_array_equal(labels, again)


def test_sampler_respects_box_and_teff_range(reference_grid):
    labels = reference_grid.sample_labels(2000, np.random.default_rng(3), teff_range=(4000, 6000))
    assert labels[:, 0].min() >= 4000 and labels[:, 0].max() <= 6000
    assert labels[:, 1].min() < 0.5 and labels[:, 1].max() > 4.5  # whole log g range
    hot = reference_grid.sample_labels(2000, np.random.default_rng(4), box={"teff": (9000, 9750)})
    assert hot[:, 1].min() >= 1.0  # the hole of the hot, low-gravity corner is avoided


def test_reference_grid_holes(reference_grid):
    missing = reference_grid.missing_nodes()
    assert len(missing) == 231
    assert reference_grid.valid_cells().sum() > 1000
    with pytest.raises(OutsideGridError, match="hole"):
        reference_grid.interpolate([7000.0, 0.2, 0.0])


def test_label_scaling_round_trip():
    labels = np.array([[3500, 0, -2.5, 0], [9750, 5, 0.5, 30], [5772, 4.44, 0.0, 2.0]])
    scaled = scale_labels(labels)
    np.testing.assert_allclose(scaled[0], 0)
    np.testing.assert_allclose(scaled[1], 1)
    np.testing.assert_allclose(unscale_labels(scaled), labels)
    assert len(table1_axis("teff")) == 26 and len(table1_axis("mh")) == 7


def test_bad_grid_files(tmp_path):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  = T" + b" " * 100)
    with pytest.raises(ValueError, match="bad.fits"):
        Grid.from_fits(bad)
    with pytest.raises(ValueError, match="NaN"):
        Grid(np.arange(3.0), [[5500, 4.0, 0.0]], [[1.0, np.nan, 1.0]])
    with pytest.raises(ValueError, match="not a Table-1 node"):
        Grid(np.arange(3.0), [[5600, 4.0, 0.0]], [[1.0, 1.0, 1.0]])


def block_grid(flux_of, drop=()):
    """A 5 × 5 × 5 block of Table-1 nodes (5000–6000 K, 3–5 dex, −1.5…+0.5) whose flux at 4
    wavelengths is ``flux_of(labels)`` (n, 4)."""
    nodes = [(t, g, m) for t in np.arange(5000.0, 6001.0, 250.0) for g in np.arange(3.0, 5.01, 0.5)
             for m in np.arange(-1.5, 0.51, 0.5) if (t, g, m) not in drop]
    labels = np.array(nodes)
    return Grid(np.linspace(5020, 5400, 4), labels, flux_of(labels).astype(np.float32))


def quadratic(labels):
    """A flux that is a sum of quadratics in the three labels (scaled to the axis steps)."""
    u = (labels - [5000.0, 3.0, -1.5]) / [250.0, 0.5, 0.5]
    value = 1.0 + 0.01 * u[:, 0] ** 2 - 0.02 * u[:, 1] ** 2 + 0.015 * u[:, 2] ** 2 + 0.05 * u[:, 0]
    return value[:, None] * np.array([1.0, 0.9, 0.8, 0.7])


def test_cubic_is_exact_for_quadratics_inside_and_for_lines_everywhere():
    grid = block_grid(quadratic)
    rng = np.random.default_rng(3)
    inside = rng.uniform([5250.0, 3.5, -1.0], [5750.0, 4.5, 0.0], size=(40, 3))
    np.testing.assert_allclose(grid.interpolate(inside, "cubic"), quadratic(inside), rtol=1e-5)
    linear_error = np.abs(grid.interpolate(inside) - quadratic(inside)).max()
    assert linear_error > 1e-3  # trilinear is not exact for them: the test can tell the two apart
    everywhere = rng.uniform([5000.0, 3.0, -1.5], [6000.0, 5.0, 0.5], size=(40, 3))
    line = lambda x: (1.0 + 1e-4 * x[:, :1] + 0.1 * x[:, 1:2] - 0.2 * x[:, 2:]) * np.ones(4)  # noqa: E731
    np.testing.assert_allclose(block_grid(line).interpolate(everywhere, "cubic"), line(everywhere),
                               rtol=1e-5)  # the ends' extrapolated nodes keep lines exact
    rows, weights = grid.cubic_weights(everywhere)
    assert rows.shape == weights.shape == (40, 64)
    np.testing.assert_allclose(weights.sum(1), 1.0)
    for row, label in enumerate(grid.labels[::17]):  # exact at nodes, edges included
        np.testing.assert_allclose(grid.interpolate(label, "cubic"), grid.flux[row * 17], rtol=1e-6)


def test_cubic_falls_back_to_trilinear_beside_a_hole():
    grid = block_grid(quadratic, drop=[(5000.0, 4.0, -0.5)])  # outside the cell, in the stencil
    point = np.array([[5375.0, 4.25, -0.25]])
    rows, weights = grid.cubic_weights(point)
    linear_rows, linear_weights = grid.corner_weights(point)
    np.testing.assert_array_equal(weights[0, :8], linear_weights[0])
    assert not weights[0, 8:].any()
    np.testing.assert_allclose(grid.interpolate(point, "cubic"), grid.interpolate(point))
    inside = np.array([[5625.0, 4.25, -0.25]])  # its stencil does not reach the hole
    np.testing.assert_allclose(grid.interpolate(inside, "cubic"), quadratic(inside), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown interpolation"):
        grid.interpolate(point, "quintic")
    with pytest.raises(OutsideGridError, match="outside the grid"):
        grid.cubic_weights(np.array([[3000.0, 4.0, 0.0]]))
