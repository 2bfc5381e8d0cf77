"""HARPS-N, the instrument the networks' input imitates, and the physical constants it needs.

The paper feeds its networks an "image" of 8 échelle orders (rows) × 4096 pixels: HARPS-N
physical orders 121–114, i.e. rows 36–43 (counted from 0) of the pipeline's 69-row frames,
5026.2–5394.7 Å in air, observed at resolving power R = 115 000. The pixel wavelengths
themselves live in :mod:`paper_lib.echelle.layout`.
"""

from __future__ import annotations

N_ORDERS = 8  # échelle orders in the networks' input
N_PIXELS = 4096  # pixels per order
FIRST_ROW = 36  # row of order 121 in the 69-row HARPS-N frames
ROWS = tuple(range(FIRST_ROW, FIRST_ROW + N_ORDERS))
PHYSICAL_ORDER_OFFSET = 157  # physical order = 157 − row
R = 115000.0  # HARPS-N resolving power λ/Δλ (FWHM of the instrument profile: c/R)
C_KMS = 299792.458  # speed of light [km/s]
# Gaps between the CCDs of an instrument inside our range, in air Å in the observatory frame:
# HARPS (the instrument of the real test spectra) records our range on two CCDs and has no pixel
# over 5304.35–5337.25 Å (its e2ds rows 45 and 46, wave file HARPS.2003-12-12T21:47:59.366);
# its s1d files are barycentric, so there the gap moves by the BERV (see
# paper_lib.observed.pixels). HARPS-N records all orders on one CCD: no gap.
CCD_GAPS_A = {"HARPS": ((5304.35, 5337.25),), "HARPS-N": ()}
# The HARPS gap as the training realism draws it (paper_lib.echelle.realism, moved by ± its
# gap_shift_A): where the HARPS Sun's s1d (BERV +24.96 km/s) holds flux 0 [Å]
HARPS_CCD_GAP_A = (5304.66, 5337.59)


def physical_order(index: int) -> int:
    """HARPS-N physical order of row ``index`` (0 … 7) of the networks' input (121 … 114)."""
    return PHYSICAL_ORDER_OFFSET - ROWS[index]


def check_spectra(x, name: str = "spectra"):
    """Check a batch of échelle images (a torch tensor) and return it as float32.

    x: (B, 8, 4096) continuum-normalised flux (8 HARPS-N orders × 4096 pixels).
    Raises ValueError on a wrong shape, a non-floating dtype or NaN/inf values.
    """
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, {N_ORDERS}, {N_PIXELS}), got {type(x).__name__}")
    if x.ndim != 3 or tuple(x.shape[1:]) != (N_ORDERS, N_PIXELS) or x.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (batch, {N_ORDERS}, {N_PIXELS}) "
            f"({N_ORDERS} échelle orders × {N_PIXELS} pixels, batch ≥ 1), got {tuple(x.shape)}"
        )
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor (float32), got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contain {n_bad} NaN or infinite values; expected finite flux of shape (batch, {N_ORDERS}, {N_PIXELS})")
    return x if x.dtype == torch.float32 else x.float()
