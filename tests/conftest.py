"""Shared fixtures: real data from ../shared/data when present, a private cache per session, and
the real-data-free pieces the model and training tests share (tiny model sizes, toy batches and
sources of spectra)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch

from paper_lib import paths

REFERENCE_GRID = "reference_grid/reference_grid.fits"


def shared_or_skip(relative: str):
    """Path of a file under the shared data folder, or skip the test saying why."""
    try:
        return paths.shared_file(relative)
    except FileNotFoundError as error:
        pytest.skip(f"real data not available: {error}")


@pytest.fixture(scope="module")
def predictor():
    """predict's default network with the committed ``cpu`` weights and calibrations."""
    from paper_lib.predict import DEFAULT_MODEL, Predictor

    return Predictor.load(DEFAULT_MODEL, "cpu")


@pytest.fixture(scope="session")
def reference_grid():
    from paper_lib.synthetic.grid import Grid

    return Grid.from_fits(shared_or_skip(REFERENCE_GRID))


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """An empty PAPER_LIB_CACHE for tests that build things."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PAPER_LIB_CACHE", str(cache))
    return cache


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tests share 2 cores with other work; 1 thread is fastest here
    np.random.seed(0)
    yield
    torch.set_num_threads(previous)


# toy data for the model and training tests -------------------------------------------------

TINY = {
    "resnet": {"width": 4, "fc_hidden": (16, 16), "dropout": 0.0, "stem_stride": 8},
    "attention": {"width": 8, "inter_channels": 8, "stem_stride": 8, "head_hidden": 16},
    "dae": {"width": 4, "depth": 2},
}


class Batch(NamedTuple):
    noisy: torch.Tensor  # (n, 8, 4096)
    clean: torch.Tensor  # (n, 8, 4096)
    labels: torch.Tensor  # (n, 4) in [0, 1]


class ToySpectrumSource:
    """Real-data-free spectra: Gaussian absorption lines at fixed pixels in each of the 8 orders.

    Half the lines deepen as label 0 ("T_eff") falls, half as label 1 ("log g") rises, all
    scale with label 2 ("[M/H]"), and label 3 ("v sin i") widens every line (2–8 px).
    White noise at the given SNR is added to make ``noisy``.
    """

    def __init__(self, *, n_lines: int = 24, snr: float = 50.0, seed: int = 0) -> None:
        layout = np.random.default_rng(seed)
        self.centres = layout.uniform(40, 4056, size=(8, n_lines))
        self.driver = layout.integers(0, 2, size=(8, n_lines))
        self.snr = snr
        self.pixels = np.arange(4096, dtype=np.float64)

    def clean(self, labels: np.ndarray) -> np.ndarray:
        t, g, m, v = (labels[:, i, None, None] for i in range(4))
        depth = np.where(self.driver == 0, 0.15 + 0.6 * (1 - t), 0.15 + 0.6 * g) * (0.4 + 0.6 * m)
        width = 2.0 + 6.0 * v
        profile = np.exp(-0.5 * ((self.pixels - self.centres[None, :, :, None]) / width[..., None]) ** 2)
        return (1.0 - (depth[..., None] * profile).sum(axis=2)).astype(np.float32)

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        labels = rng.uniform(0.0, 1.0, size=(n, 4)).astype(np.float32)
        clean = self.clean(labels)
        noisy = clean + rng.normal(0.0, 1.0 / self.snr, size=clean.shape).astype(np.float32)
        return Batch(torch.from_numpy(noisy), torch.from_numpy(clean), torch.from_numpy(labels))


class FixedSource:
    """Always the same batch (for overfitting)."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        return self.batch


class LineSource:
    """Real-data-free spectra: one absorption line (σ = 20 px) in the middle of each order;
    order k's line depth is 0.5 × label (k mod 4); white noise of σ 0.02."""

    profile = np.exp(-0.5 * ((np.arange(4096) - 2048.0) / 20.0) ** 2)

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        labels = rng.uniform(0.0, 1.0, size=(n, 4))
        clean = 1.0 - 0.5 * labels[:, [0, 1, 2, 3, 0, 1, 2, 3], None] * self.profile
        noisy = clean + rng.normal(0.0, 0.02, size=clean.shape)
        return Batch(*(torch.as_tensor(a, dtype=torch.float32) for a in (noisy, clean, labels)))


@pytest.fixture(scope="session")
def smoke_grid():
    """The smoke profile's grid (14 real nodes), built here if the cache lacks it."""
    from paper_lib.profiles import get_profile
    from paper_lib.synthetic.grid import load_grid

    smoke = get_profile("smoke")
    try:
        return load_grid(smoke)
    except FileNotFoundError:
        from paper_lib.synthetic.build import build_profile_grid

        build_profile_grid(smoke, progress=False)
        return load_grid(smoke)
