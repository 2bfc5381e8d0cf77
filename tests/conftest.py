"""Shared fixtures: real data from ../shared/data when present, a private cache per session."""

from __future__ import annotations


import numpy as np
import pytest

from paper_lib import paths

REFERENCE_GRID = "reference_grid/reference_grid.fits"


def shared_or_skip(relative: str):
    """Path of a file under the shared data folder, or skip the test saying why."""
    try:
        return paths.shared_file(relative)
    except FileNotFoundError as error:
        pytest.skip(f"real data not available: {error}")


@pytest.fixture(scope="session")
def reference_grid():
    from paper_lib.grid import Grid

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
