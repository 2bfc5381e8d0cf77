"""Tests of paper_lib.echelle.generator and .testsets: the on-the-fly generator and the cached test sets.

They use the shared reference grid (5030–5370 Å), padded with continuum to reach the orders'
5026–5395 Å; the first and last orders are therefore partly continuum, which none of the
checks below depends on.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from paper_lib.echelle.generator import Batch, SpectrumGenerator
from paper_lib.echelle.steps import COMPILED_OBSERVE, COMPILED_RENDER, CompiledStep, standard_normal
from paper_lib.echelle.testsets import make_test_set
from paper_lib.labels import unscale_labels
from paper_lib.synthetic.grid import OutsideGridError



HOT_BOX = {"teff": (9000.0, 9750.0), "logg": (4.0, 5.0), "mh": (-0.5, 0.5)}  # few lines
SUN_BOX = {"teff": (5500.0, 6000.0), "logg": (4.0, 4.5), "mh": (-0.5, 0.0)}


@pytest.fixture
def grid(reference_grid):
    """The shared reference grid (session fixture of conftest.py; skips if it is absent)."""
    return reference_grid


def generator(grid, **kwargs):
    settings = {"snr": 50.0, "seed": 7, "box": SUN_BOX, "pad_with_continuum": True}
    settings.update(kwargs)
    return SpectrumGenerator(grid, **settings)


def test_batch_shapes_dtypes_and_labels(grid):
    batch = generator(grid).sample(5)
    assert isinstance(batch, Batch) and len(batch) == 5
    assert batch.noisy.shape == batch.clean.shape == (5, 8, 4096)
    assert batch.noisy.dtype == batch.clean.dtype == torch.float32
    assert batch.labels.shape == batch.labels_physical.shape == (5, 4)
    assert batch.labels.dtype == torch.float32
    assert bool(torch.isfinite(batch.noisy).all() and torch.isfinite(batch.clean).all())
    assert bool(((batch.labels >= 0) & (batch.labels <= 1)).all())
    np.testing.assert_allclose(unscale_labels(batch.labels.numpy()),
                               batch.labels_physical.numpy(), rtol=1e-5)
    physical = batch.labels_physical.numpy()
    for d, name in enumerate(("teff", "logg", "mh")):
        assert np.all((physical[:, d] >= SUN_BOX[name][0]) & (physical[:, d] <= SUN_BOX[name][1]))
    assert np.all((physical[:, 3] >= 0) & (physical[:, 3] <= 30))
    assert torch.median(batch.clean) > 0.9  # normalised: the continuum is near 1
    assert batch[1:3].noisy.shape == (2, 8, 4096)


def test_deterministic_for_a_seed_with_fresh_noise_per_call(grid):
    first, second = generator(grid), generator(grid)
    a, b = first.sample(3), second.sample(3)
    for name in ("noisy", "clean", "labels", "labels_physical"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)
    again = first.sample(3)
    assert not torch.equal(again.noisy, a.noisy)
    other_seed = generator(grid, seed=8).sample(3)
    assert not torch.equal(other_seed.labels, a.labels)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    torch.testing.assert_close(first.sample(2, rng_a).noisy, second.sample(2, rng_b).noisy)


@pytest.mark.parametrize("snr", [20.0, 100.0])
def test_empirical_snr_on_the_continuum(grid, snr):
    batch = generator(grid, snr=snr, box=HOT_BOX).sample(4)
    noise = batch.noisy - batch.clean
    assert 1.0 / noise.std().item() == pytest.approx(snr, rel=0.05)
    # independent of the clean target: the scatter of the normalised noisy flux where the
    # hot stars are line-free
    continuum = batch.clean > 0.998
    assert continuum.float().mean() > 0.5
    assert 1.0 / batch.noisy[continuum].std().item() == pytest.approx(snr, rel=0.05)
    assert batch.noisy[continuum].mean().item() == pytest.approx(1.0, abs=0.3 / snr)


def test_clean_target_shares_the_noisy_normalisation(grid):
    batch = generator(grid, snr=1e5).sample(2)
    torch.testing.assert_close(batch.noisy, batch.clean, atol=1e-4, rtol=0)
    slanted = generator(grid, snr=1e5, slant_max=0.0).sample(2)
    assert (slanted.noisy - slanted.clean).abs().max() < 1e-4


def test_render_rejects_bad_spectra(grid):
    gen = generator(grid)
    flux = grid.interpolate(np.array([[5777.0, 4.44, 0.0]]))
    image = gen.render(flux, np.array([2.0]))
    assert image.shape == (1, 8, 4096)
    with pytest.raises(ValueError, match="shape"):
        gen.render(flux[:, :-1], np.array([2.0]))
    with pytest.raises(ValueError, match="shape"):
        gen.render(flux[0], np.array([2.0]))
    bad = flux.copy()
    bad[0, 1000] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gen.render(bad, np.array([2.0]))
    with pytest.raises(ValueError, match="batch of 1"):
        gen.render(flux, np.array([2.0, 3.0]))


def test_fast_render_matches_the_literal_pipeline(grid):
    """Interpolating node transforms in Fourier space = interpolate, resample, broaden, resample."""
    gen = generator(grid, box=None)
    labels = np.array([[5777.0, 4.44, 0.0, 2.0],      # Sun-like, between nodes
                       [5750.0, 4.5, 0.0, 0.0],       # a node, no rotation
                       [3612.0, 0.7, -2.3, 30.0],     # cool giant, the fastest rotation
                       [9610.0, 4.9, 0.4, 17.3]])
    fast = gen.render_labels(labels)
    literal = gen.render(grid.interpolate(labels[:, :3]), labels[:, 3], gen.vmacro(labels))
    assert fast.shape == (4, 8, 4096) and fast.dtype == torch.float32
    assert (fast - literal).abs().max().item() < 1e-5
    assert fast[2].min() < 0.5  # deep lines survive: this is not a comparison of continua
    cubic = generator(grid, box=None, interpolation="cubic")
    literal = cubic.render(grid.interpolate(labels[:, :3], "cubic"), labels[:, 3],
                           cubic.vmacro(labels))
    assert (cubic.render_labels(labels) - literal).abs().max().item() < 1e-5
    assert (cubic.render_labels(labels[1:2]) - fast[1:2]).abs().max().item() < 1e-5  # a node
    assert (cubic.render_labels(labels[:1]) - fast[:1]).abs().max().item() > 1e-4  # between
    assert "interpolation" not in gen.settings()  # the linear one keeps its cache keys
    assert cubic.settings()["interpolation"] == "cubic"
    with pytest.raises(ValueError, match="unknown interpolation"):
        generator(grid, box=None, interpolation="spline")


def test_macroturbulence_follows_the_relation_and_can_be_switched_off(grid):
    from paper_lib.synthetic.turbulence import vmacro_kms

    labels = np.array([[5777.0, 4.44, 0.0, 2.0], [6000.0, 4.0, -0.5, 5.0]])
    with_macro, without = generator(grid, box=None), generator(grid, box=None, macroturbulence=False)
    np.testing.assert_allclose(with_macro.vmacro(labels), vmacro_kms(labels[:, 0], labels[:, 1]))
    assert np.all(without.vmacro(labels) == 0.0)
    broad, sharp = with_macro.render_labels(labels), without.render_labels(labels)
    assert (broad.amin(dim=(1, 2)) > sharp.amin(dim=(1, 2))).all()  # shallower cores
    assert with_macro.settings()["macroturbulence"] and without.settings()["macroturbulence"] is None


def test_node_transforms_are_computed_once_per_grid_and_layout(grid):
    first, second = generator(grid), generator(grid, snr=5.0, seed=1)
    assert first.node_transforms() is second.node_transforms()
    slower = generator(grid, vsini_range=(0.0, 10.0))  # a shorter pad: another layout
    assert slower.node_transforms() is not first.node_transforms()
    n_nodes = grid.flux.shape[0]
    assert first.node_transforms().shape[0] == n_nodes
    assert first.node_transforms().dtype == torch.float32


def test_render_labels_rejects_bad_labels(grid):
    gen = generator(grid)
    with pytest.raises(ValueError, match="shape"):
        gen.render_labels(np.array([[5777.0, 4.44, 0.0]]))
    with pytest.raises(ValueError, match="v sin i"):
        gen.render_labels(np.array([[5777.0, 4.44, 0.0, -1.0]]))
    with pytest.raises(ValueError, match="v sin i"):
        gen.render_labels(np.array([[5777.0, 4.44, 0.0, np.nan]]))
    with pytest.raises(ValueError, match="vsini_range maximum of 30"):
        gen.render_labels(np.array([[5777.0, 4.44, 0.0, 31.0]]))  # beyond the FFT's padding
    with pytest.raises(OutsideGridError, match="outside"):
        gen.render_labels(np.array([[12000.0, 4.44, 0.0, 2.0]]))
    with pytest.raises(OutsideGridError, match="hole"):
        gen.render_labels(np.array([[8000.0, 0.2, 0.0, 2.0]]))


def test_requests_outside_the_grid_raise(grid):
    with pytest.raises(OutsideGridError):
        generator(grid, box={"teff": (12000.0, 13000.0)}).sample(1)
    hole = {"teff": (7750.0, 8250.0), "logg": (0.0, 0.5)}  # missing Castelli–Kurucz models
    with pytest.raises(OutsideGridError):
        generator(grid, box=hole).sample(1)
    with pytest.raises(ValueError, match="5020–5400"):
        SpectrumGenerator(grid, snr=20.0, seed=0)  # reference grid is too short, no padding
    with pytest.raises(ValueError, match="snr"):
        generator(grid, snr=0.0)


def test_make_test_set_is_cached_atomically(grid, tmp_path, monkeypatch):
    monkeypatch.setenv("PAPER_LIB_CACHE", str(tmp_path))
    kwargs = {"box": SUN_BOX, "pad_with_continuum": True}
    first = make_test_set(grid, 3, 30.0, 11, **kwargs)
    files = sorted((tmp_path / "testsets").iterdir())
    assert [f.suffix for f in files] == [".npz"]  # no temporary file left behind
    assert "n3_snr30_seed11" in files[0].name
    stamp = files[0].stat().st_mtime_ns
    second = make_test_set(grid, 3, 30.0, 11, **kwargs)
    assert files[0].stat().st_mtime_ns == stamp  # read, not rewritten
    for name in ("noisy", "clean", "labels", "labels_physical"):
        torch.testing.assert_close(getattr(first, name), getattr(second, name), rtol=0, atol=0)
    fresh = SpectrumGenerator(grid, snr=30.0, seed=11, **kwargs).sample(3)
    torch.testing.assert_close(first.noisy, fresh.noisy, atol=5e-4, rtol=0)  # float16 storage
    torch.testing.assert_close(first.labels_physical, fresh.labels_physical)
    make_test_set(grid, 3, 60.0, 11, **kwargs)
    assert len(list((tmp_path / "testsets").iterdir())) == 2  # a new key for a new SNR


def test_standard_normal_from_random_bits():
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2**64, size=(64, 8, 2048), dtype=np.uint64).view(np.int32)
    z = standard_normal(torch.from_numpy(bits))
    assert z.shape == (64, 8, 4096) and z.dtype == torch.float32
    torch.testing.assert_close(standard_normal(torch.from_numpy(bits)), z, rtol=0, atol=0)
    flat = z.double().flatten().numpy()
    n = flat.size  # 2 097 152 deviates: bounds below are 5 standard errors
    assert abs(flat.mean()) < 5 / np.sqrt(n)
    assert abs(flat.std() - 1.0) < 5 / np.sqrt(2 * n)
    for k, expected in ((1, 0.682689), (2, 0.954500), (3, 0.997300)):
        within = np.mean(np.abs(flat) < k)
        assert abs(within - expected) < 5 * np.sqrt(expected * (1 - expected) / n)
    assert stats.kstest(flat[::7], "norm").pvalue > 1e-4
    cos_half, sin_half = z[..., :2048].flatten(), z[..., 2048:].flatten()
    assert abs(np.corrcoef(cos_half, sin_half)[0, 1]) < 5 / np.sqrt(cos_half.numel())
    neighbours = np.corrcoef(flat[:-1], flat[1:])[0, 1]
    assert abs(neighbours) < 5 / np.sqrt(n)
    assert np.abs(flat).max() <= np.sqrt(50 * np.log(2)) + 1e-5  # the 24-bit u₁ bound
    # the extreme words stay finite: u₁ = 2⁻²⁵ (all low bits 0) and u₁ ≈ 1 (all 1)
    edges = standard_normal(torch.tensor([[0, -1, 0, -1]], dtype=torch.int32))
    assert bool(torch.isfinite(edges).all())
    assert edges[0, 0].item() == pytest.approx(np.sqrt(50 * np.log(2)), rel=1e-6)
    assert abs(edges[0, 1].item()) < 1e-3


def test_compiled_step_falls_back_to_eager_with_one_warning(monkeypatch):
    def no_compiler(function, **kwargs):
        def fails(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return fails

    monkeypatch.setattr(torch, "compile", no_compiler)

    def add_one(tensor):
        return tensor + 1

    step = CompiledStep(add_one)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ compiler"):
        assert step(torch.ones(2)).tolist() == [2.0, 2.0]
    assert "InvalidCxxCompiler" in step.failed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, still the right answer
        assert step(torch.zeros(1)).tolist() == [1.0]


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile (inductor) needs a C++ compiler")
def test_compiled_generator_matches_the_eager_one(grid):
    """compile=True: the same labels, images equal but for rare continuum-threshold pixels."""
    eager = generator(grid, seed=4, snr=20.0).sample(4)
    compiled = generator(grid, seed=4, snr=20.0, compile=True).sample(4)
    assert COMPILED_RENDER.failed is None and COMPILED_OBSERVE.failed is None
    torch.testing.assert_close(compiled.labels_physical, eager.labels_physical, rtol=0, atol=0)
    for name in ("noisy", "clean"):
        difference = (getattr(compiled, name) - getattr(eager, name)).abs()
        assert difference.max().item() < 2e-3  # the noise σ is 5e-2
        assert difference.mean().item() < 1e-5
    again = generator(grid, seed=4, snr=20.0, compile=True).sample(4)
    for name in ("noisy", "clean"):  # deterministic for a seed
        torch.testing.assert_close(getattr(again, name), getattr(compiled, name), rtol=0, atol=0)
