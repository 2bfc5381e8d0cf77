"""Micro- and macroturbulence relations: published values, domains, clamping, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from paper_lib.synthetic.turbulence import VMACRO_MAX_KMS, VMICRO_LIMITS, vmacro_kms, vmicro_kms


def test_vmicro_of_the_sun_and_a_giant():
    assert vmicro_kms(5772.0, 4.438, 0.0) == pytest.approx(6.932e-4 * 5772 - 0.348 * 4.438 - 1.437)
    assert vmicro_kms(5772.0, 4.438, 0.0) == pytest.approx(1.02, abs=0.01)
    assert vmicro_kms(4500.0, 2.5, -0.5) == pytest.approx(2.72 - 0.457 * 2.5 + 0.072 * -0.5)


def test_vmicro_is_clamped_to_the_calibrated_domains():
    assert vmicro_kms(9750.0, 4.5, 0.0) == vmicro_kms(6500.0, 4.5, 0.0)  # Tsantaki: ≤ 6500 K
    assert vmicro_kms(3500.0, 5.0, 0.0) == VMICRO_LIMITS[0]  # cool dwarfs: the floor
    values = vmicro_kms(np.full(3, 4000.0), np.array([0.0, 2.0, 5.0]), np.zeros(3))
    assert values.shape == (3,) and np.all((values >= VMICRO_LIMITS[0]) & (values <= VMICRO_LIMITS[1]))


def test_vmacro_doyle_2014():
    assert vmacro_kms(5777.0, 4.44) == pytest.approx(3.21)
    assert vmacro_kms(6400.0, 4.0) == pytest.approx(VMACRO_MAX_KMS)
    assert vmacro_kms(9750.0, 1.0) == pytest.approx(VMACRO_MAX_KMS)  # clamped, not extrapolated
    grid = vmacro_kms(*np.meshgrid(np.arange(3500.0, 9751.0, 250.0), np.arange(0.0, 5.1, 0.5)))
    assert grid.min() > 2.0 and grid.max() <= VMACRO_MAX_KMS


def test_turbulence_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        vmicro_kms(np.nan, 4.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        vmacro_kms(5000.0, np.nan)
