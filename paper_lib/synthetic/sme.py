"""A second radiative-transfer code for the physics variants: SME on the grid's own inputs.

Published comparisons of spectral-synthesis codes run on identical atmospheres, line lists and
abundances (e.g. Blanco-Cuaresma 2019, MNRAS 486, 2075) find that the codes alone move
derived Teff, log g and [M/H] — through their equations of state, partition functions,
continuous opacities and line-broadening implementations. The ``sme`` physics variant
(:mod:`paper_lib.synthetic.variants`) measures that part of the systematic σ: the same ATLAS9
model, the same Turbospectrum-format line lists, the same solar abundances scaled by [M/H] and
the same microturbulence, synthesised by SME (Valenti & Piskunov 1996, A&AS 118, 595;
Piskunov & Valenti 2017, A&A 597, A16; the ``pysme-astro`` package, BSD-3) instead of
Turbospectrum.

The line lists are translated, not changed (:func:`sme_line_table`):

* radiative damping: Turbospectrum's γ_rad [s⁻¹] → SME's log₁₀ γ_rad (0 stays 0: SME's
  classical estimate);
* van der Waals: log γ₆ (< 0) and Anstee–Barklem–O'Mara σ.α (≥ 20) have the same meaning in
  both; Turbospectrum's Unsöld enhancement factors (0 < f < 20; ≈ 3100 Gaia-ESO lines, almost
  all of rare earths and other weak lines) have no SME equivalent and become 0, SME's own
  Unsöld estimate;
* Stark damping: SME's estimate (0) for every line (Turbospectrum's lists carry none);
* isotopic lines: Turbospectrum multiplies them by the isotope's solar fraction, SME does not,
  so log gf + log₁₀ fraction (``ISOTOPE_FRACTIONS``: Cu, La, Pr, Nd and Mg in MgH, the
  representative isotopic compositions of Asplund et al. 2009, Table 3; Mg 79/10/11 % as in
  Turbospectrum).

``pysme-astro`` is optional (``pip install -e '.[sme]'``); only building this variant needs it.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .linelists import atomic_species, read_turbospectrum_blocks
from .runner import grid_wavelengths, work_folder

SME_REQUIREMENT = "pysme-astro>=1.2,<2"
UNSOLD_MAX = 20.0  # Turbospectrum: a van der Waals entry in (0, 20) is an Unsöld factor
# solar isotopic fractions of the isotope-coded species in our lists (see module docstring)
ISOTOPE_FRACTIONS = {
    (29, 63): 0.6915, (29, 65): 0.3085,  # Cu
    (57, 139): 0.99911,  # La (¹³⁸La 0.089 %)
    (59, 141): 1.0,  # Pr
    (60, 142): 0.27152, (60, 143): 0.12174, (60, 144): 0.23798, (60, 145): 0.08293,
    (60, 146): 0.17189, (60, 148): 0.05756, (60, 150): 0.05638,  # Nd
    (12, 24): 0.7899, (12, 25): 0.1000, (12, 26): 0.1101,  # Mg (in MgH)
}
_MOLECULES = {"0112": ("MgH", 12)}  # Turbospectrum molecule code → (SME species, element)
_SYMBOLS = ("H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
            "Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce "
            "Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn "
            "Fr Ra Ac Th Pa U").split()


class SMENotFound(RuntimeError):
    """``pysme-astro`` is not installed (only the ``sme`` physics variant needs it)."""


def require_pysme():
    """Import ``pysme`` quietly; :class:`SMENotFound` saying how to install it if it is absent."""
    try:
        import pysme  # noqa: F401
    except ImportError as error:
        raise SMENotFound(f"the 'sme' physics variant needs SME: pip install "
                          f"'{SME_REQUIREMENT}' (or pip install -e '.[sme]')") from error
    logging.getLogger("pysme").setLevel(logging.WARNING)
    return pysme


def _species(code: str, ion: int) -> tuple[str, float]:
    """(SME species, log₁₀ isotopic fraction) of a Turbospectrum block's species code."""
    if "." in code and code.split(".")[0] in _MOLECULES:
        name, element = _MOLECULES[code.split(".")[0]]
        return f"{name} 1", float(np.log10(ISOTOPE_FRACTIONS[(element, int(code[-3:]))]))
    if code.split(".")[0].isdigit() and len(code.split(".")[0]) == 4:
        raise ValueError(f"molecule {code!r} has no SME translation (known: {list(_MOLECULES)})")
    value = float(code)
    element, mass = int(value), int(round((value % 1) * 1000))
    if mass and (element, mass) not in ISOTOPE_FRACTIONS:
        raise ValueError(f"isotope {mass} of element {element} ({code!r}) has no solar fraction "
                         f"in ISOTOPE_FRACTIONS: no SME translation")
    fraction = np.log10(ISOTOPE_FRACTIONS[(element, mass)]) if mass else 0.0
    return f"{_SYMBOLS[element - 1]} {ion}", float(fraction)


def sme_line_table(linelists) -> dict[str, np.ndarray]:
    """The lines of Turbospectrum-format ``linelists`` as SME's columns, sorted by wavelength:
    species, wlcent [Å, air], excit [eV], gflog, gamrad, gamqst, gamvw, ionization."""
    rows, species = [], []
    for path in linelists:
        for header, _, body in read_turbospectrum_blocks(Path(path)):
            code, (_, ion) = header.split("'")[1].strip(), atomic_species(header)
            name, log_fraction = _species(code, ion)
            for record in body:
                wave, chi, loggf, vdw, _, rad = (float(v) for v in record.split()[:6])
                vdw = 0.0 if 0.0 < vdw < UNSOLD_MAX else vdw
                rows.append((wave, chi, loggf + log_fraction,
                             np.log10(rad) if rad > 0 else 0.0, 0.0, vdw, float(ion)))
                species.append(name)
    table = np.array(rows, dtype=np.float64).reshape(-1, 7)
    order = np.argsort(table[:, 0], kind="stable")
    columns = dict(zip(("wlcent", "excit", "gflog", "gamrad", "gamqst", "gamvw", "ionization"),
                       table[order].T))
    return {"species": np.array(species)[order], **columns}


@functools.lru_cache(maxsize=4)
def _line_list(linelists: tuple):
    import pandas as pd
    from pysme.linelist.linelist import LineList

    table = sme_line_table(linelists)
    frame = pd.DataFrame({**table, "lande": 0.0, "depth": 1.0, "reference": "paper_lib",
                          "atom_number": 1.0})
    return LineList(frame, lineformat="short", medium="air")


def sme_abundances(solar) -> dict:
    """SME's abundance pattern (H = 12) from the 92 log ε values that Turbospectrum receives;
    the elements beyond U that SME also lists are set absent (−8)."""
    import pysme.abund

    pattern = {el: -8.0 for el in pysme.abund.elements}
    pattern.update(zip(_SYMBOLS, (float(v) for v in solar)))
    return pattern


def synthesize_sme(node, atmosphere: Path, linelists, *, wave_range, step: float,
                   vmicro: float, solar) -> tuple[np.ndarray, np.ndarray]:
    """SME spectrum of one node (Teff K, log g dex, [M/H] dex) in the ATLAS9 file
    ``atmosphere`` with ``linelists``, ``solar`` log ε scaled by [M/H], ξ = ``vmicro`` [km/s],
    no rotation, macroturbulence or instrument → (wavelength Å air, flux/continuum)."""
    require_pysme()
    from pysme.abund import Abund
    from pysme.atmosphere.krzfile import KrzFile
    from pysme.sme import SME_Structure
    from pysme.synthesize import synthesize_spectrum

    teff, logg, mh = (float(v) for v in node)
    sme = SME_Structure()
    sme.teff, sme.logg = teff, logg
    sme.abund = Abund(0.0, sme_abundances(solar), type="H=12")
    sme.monh = mh  # after the pattern: Abund() resets [M/H]
    sme.vmic, sme.vmac, sme.vsini = float(vmicro), 0.0, 0.0
    sme.atmo = KrzFile(str(atmosphere))
    sme.atmo.method = "embedded"
    sme.linelist = _line_list(tuple(str(p) for p in linelists))
    wave = grid_wavelengths(wave_range, step)
    sme.wave = [wave]
    sme.normalize_by_continuum = True
    sme.ipres = 0
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(dir=work_folder(), prefix="sme_") as folder:
        os.chdir(folder)  # SME's library writes its syntherr.log into the working directory
        try:
            sme = synthesize_spectrum(sme)
        finally:
            os.chdir(cwd)
    flux = np.asarray(sme.synth[0], dtype=np.float64)
    if flux.shape != wave.shape or not np.all(np.isfinite(flux)):
        raise RuntimeError(f"SME returned no usable spectrum for {node}")
    return wave, flux
