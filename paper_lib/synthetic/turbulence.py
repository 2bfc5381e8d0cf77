"""Micro- and macroturbulence of real stars, from published empirical relations.

Turbospectrum needs a microturbulent velocity ξ (v_micro, km/s) for every model atmosphere.
Real stars are not all at the 2 km/s that synthetic grids often assume: the Sun has ≈ 1 km/s,
luminous giants 2–3 km/s. ξ here comes from two relations fitted to large samples of real
stars analysed homogeneously from HARPS spectra, each evaluated inside the domain it was fitted
on (inputs outside are clamped to its edge, so the grid's far corners get the value of the
nearest calibrated star rather than a wild extrapolation):

* dwarfs, log g ≥ 3.95: Tsantaki et al. 2013, A&A 555, A150 (451 FGK dwarfs),
  ξ = 6.932·10⁻⁴ Teff − 0.348 log g − 1.437 km/s, fitted on Teff 4500–6500 K, log g 3.95–4.9;
* giants, log g < 3.95: Adibekyan et al. 2015, A&A 583, A94 (FGK giants),
  ξ = 2.72 − 0.457 log g + 0.072 [Fe/H] km/s, fitted on log g ≈ 1–3.95, [Fe/H] −1…+0.5
  (extended here to log g 0 without clamping: supergiants have ξ ≳ 3 km/s).

The result is finally kept within ``VMICRO_LIMITS`` (0.5–3.0 km/s). The Sun (5772 K, 4.438):
1.02 km/s.

The forward model (not the grid) broadens every star by radial–tangential macroturbulence ζ
(:func:`paper_lib.synthetic.broadening.macroturbulence_transfer`) from

* Doyle et al. 2014, MNRAS 444, 3592, eq. 8 (28 HARPS dwarfs, Teff 5200–6400 K, log g
  4.0–4.6): ζ = 3.21 + 2.33·10⁻³ ΔT + 2.00·10⁻⁶ ΔT² − 2.00 (log g − 4.44) km/s, ΔT = Teff −
  5777 K, inputs clamped to that domain. Giants get the value of the lowest-gravity dwarf of
  the calibration (no published relation covers the whole grid), i.e. 2.2–6.3 km/s over the
  grid; the Sun: 3.2 km/s.
"""

from __future__ import annotations

import numpy as np

GIANT_DWARF_LOGG = 3.95  # dex: the boundary both papers use
VMICRO_LIMITS = (0.5, 3.0)  # km/s
TSANTAKI_DOMAIN = {"teff": (4500.0, 6500.0), "logg": (GIANT_DWARF_LOGG, 4.9)}
ADIBEKYAN_DOMAIN = {"logg": (0.0, GIANT_DWARF_LOGG), "mh": (-1.0, 0.5)}
DOYLE_DOMAIN = {"teff": (5200.0, 6400.0), "logg": (4.0, 4.6)}
VMACRO_RELATION = "Doyle et al. 2014 eq. 8, radial-tangential, inputs clamped to 5200-6400 K, 4.0-4.6"
VMICRO_RELATION = ("Tsantaki et al. 2013 (log g >= 3.95) / Adibekyan et al. 2015 (log g < 3.95), "
                   f"inputs clamped to their domains, result clamped to {VMICRO_LIMITS} km/s")


def _clamp(value, limits):
    return np.clip(value, limits[0], limits[1])


def vmicro_dwarf_kms(teff, logg):
    """Tsantaki et al. (2013) ξ [km/s] of FGK dwarfs; Teff [K], log g [dex] clamped to domain."""
    teff = _clamp(np.asarray(teff, dtype=float), TSANTAKI_DOMAIN["teff"])
    logg = _clamp(np.asarray(logg, dtype=float), TSANTAKI_DOMAIN["logg"])
    return 6.932e-4 * teff - 0.348 * logg - 1.437


def vmicro_giant_kms(logg, mh):
    """Adibekyan et al. (2015) ξ [km/s] of FGK giants; log g, [Fe/H] [dex] clamped to domain."""
    logg = _clamp(np.asarray(logg, dtype=float), ADIBEKYAN_DOMAIN["logg"])
    mh = _clamp(np.asarray(mh, dtype=float), ADIBEKYAN_DOMAIN["mh"])
    return 2.72 - 0.457 * logg + 0.072 * mh


def vmicro_kms(teff, logg, mh):
    """Microturbulence ξ [km/s] of a star with Teff [K], log g [dex, cgs], [M/H] [dex].

    Dwarfs (log g ≥ 3.95) from Tsantaki et al. 2013, giants from Adibekyan et al. 2015 (see the
    module docstring); clamped to ``VMICRO_LIMITS``. Accepts scalars or arrays; returns a float
    for scalar input.
    """
    teff, logg, mh = (np.asarray(v, dtype=float) for v in (teff, logg, mh))
    if not (np.all(np.isfinite(teff)) and np.all(np.isfinite(logg)) and np.all(np.isfinite(mh))):
        raise ValueError("vmicro_kms: Teff, log g and [M/H] must be finite")
    xi = np.where(logg >= GIANT_DWARF_LOGG, vmicro_dwarf_kms(teff, logg),
                  vmicro_giant_kms(logg, mh))
    xi = _clamp(xi, VMICRO_LIMITS)
    return float(xi) if xi.ndim == 0 else xi


def vmacro_kms(teff, logg):
    """Radial–tangential macroturbulence ζ [km/s] (Doyle et al. 2014, inputs clamped to its domain).

    Teff [K], log g [dex]; scalars or arrays (a float for scalar input).
    """
    teff = _clamp(np.asarray(teff, dtype=float), DOYLE_DOMAIN["teff"])
    logg = _clamp(np.asarray(logg, dtype=float), DOYLE_DOMAIN["logg"])
    if not (np.all(np.isfinite(teff)) and np.all(np.isfinite(logg))):
        raise ValueError("vmacro_kms: Teff and log g must be finite")
    zeta = doyle_zeta(teff, logg)
    return float(zeta) if zeta.ndim == 0 else zeta


def doyle_zeta(teff, logg):
    """Doyle et al. 2014 eq. 8: ζ [km/s] of Teff [K] and log g [dex] already clamped to
    ``DOYLE_DOMAIN``. Plain arithmetic: numpy arrays and torch tensors (with autograd) alike."""
    delta = teff - 5777.0
    return 3.21 + 2.33e-3 * delta + 2.00e-6 * delta ** 2 - 2.00 * (logg - 4.44)


# the largest ζ the relation gives (hot corner of its domain, lowest gravity): FFT padding
VMACRO_MAX_KMS = vmacro_kms(DOYLE_DOMAIN["teff"][1], DOYLE_DOMAIN["logg"][0])
