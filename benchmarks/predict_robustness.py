"""How `predict`'s answer on the real HARPS Sun moves when the file is damaged as real files are.

Runs the committed ``models/cpu`` default network (``paper_lib.predict.DEFAULT_MODEL``) on the
HARPS solar s1d of ../shared/data (313 025 px) as read, and on copies of it:

1. **the CCD gap** (5304.66–5337.59 Å, flux 0 in the file) with Gaussian noise of SNR 50 and 200
   on every pixel: the gap left at 0, the gap holding the noise, the gap holding values
   interpolated across it (plus the noise); the gap holding noise once more with the
   instrument unknown (no ``INSTRUME``/BERV: nothing says where a gap is);
2. **scattered bad pixels**: N random pixels of the whole file set to NaN or inf (alternately),
   to a negative value (−flux) or hit by a cosmic ray (+ 3 × the median flux: the charge a
   cosmic leaves does not depend on the star's flux), three draws each; and the
   NaN/inf case with the repair switched off (``REPAIR_SPAN_A = 0``: masked and filled at the
   continuum only).

For each, the labels and how far they moved from the reference in units of the network's own
σ (``Δ/σ``, the largest over the four labels): the clean file for (2), the same noise with the
gap at 0 for (1). Also the fraction of pixels repaired and the flags.

    python benchmarks/predict_robustness.py [--draws 3]

The last line is ``max_shift_sigma_2000: <largest Δ/σ of the 2000-pixel NaN/inf draws>``.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from paper_lib import paths
from paper_lib.labels import LABEL_NAMES
from paper_lib.observed import pixels
from paper_lib.observed.model_input import to_model_input
from paper_lib.observed.read import read_spectrum
from paper_lib.observed.spectrum import Spectrum
from paper_lib.predict import DEFAULT_MODEL, DEFAULT_PROFILE, Predictor
from paper_lib.predict.rows import label_rows

SUN = "sun/Sun_HARPS_Ganymede_s1d.fits"
GAP_SNR = (50.0, 200.0)
BAD_COUNTS = (2000, 5000, 10000, 20000, 40000, 70000, 100000)


def answer(predictor, spectrum: Spectrum) -> dict:
    """The row `predict` gives for an in-memory spectrum."""
    return label_rows(predictor, [to_model_input(spectrum)], 32)[0]


def with_flux(sun: Spectrum, flux, meta=None) -> Spectrum:
    """The Sun with other flux (and the reader's validity rule: finite, non-zero)."""
    return Spectrum(wave=sun.wave, flux=flux, mask=np.isfinite(flux) & (flux != 0), kind="s1d",
                    path=None, meta=dict(sun.meta if meta is None else meta))


def shift(row: dict, reference: dict) -> float:
    """Largest |Δ label| / σ_stat of the reference over the four labels (the network's own σ:
    the systematic part does not change with the file's damage)."""
    return max(abs(row[n] - reference[n]) / reference[f"{n}_sigma_stat"] for n in LABEL_NAMES)


def line(name: str, row: dict, reference: dict | None) -> str:
    labels = "  ".join(f"{row[n]:8.3f} ± {row[f'{n}_sigma']:.3f}" for n in LABEL_NAMES)
    moved = f"  Δ/σ {shift(row, reference):5.2f}" if reference is not None else ""
    return (f"{name:44s} {labels}{moved}  filled {100 * row['gap_fraction']:.2f} %, repaired "
            f"{100 * row['bad_pixel_fraction']:.3f} %  flags {','.join(row['flags']) or '-'}")


def gap_cases(predictor, sun: Spectrum, rng) -> None:
    """Noise on every pixel: the gap at 0 (reference), noise, interpolated values + noise."""
    zero = ~sun.mask
    level = float(np.median(sun.flux[sun.mask]))
    edges = np.interp(sun.wave, sun.wave[sun.mask], sun.flux[sun.mask])  # across the gap
    for snr in GAP_SNR:
        noise = rng.normal(0.0, level / snr, sun.flux.size)
        at_zero = np.where(zero, 0.0, sun.flux + noise)
        reference = answer(predictor, with_flux(sun, at_zero))
        print(line(f"SNR {snr:g}, gap at 0 (reference)", reference, None))
        cases = {"gap holds noise": sun.flux + noise, "gap holds interpolation + noise": edges + noise}
        for name, flux in cases.items():
            print(line(f"SNR {snr:g}, {name}", answer(predictor, with_flux(sun, flux)), reference))
        unknown = {k: v for k, v in sun.meta.items() if k not in ("instrument", "berv_kms", "frame")}
        print(line(f"SNR {snr:g}, gap holds noise, instrument unknown",
                   answer(predictor, with_flux(sun, sun.flux + noise, unknown)), reference))


def damaged(sun: Spectrum, kind: str, n: int, rng) -> np.ndarray:
    """The Sun's flux with ``n`` random pixels (outside the gap) damaged as ``kind`` says."""
    flux = sun.flux.copy()
    where = rng.choice(np.flatnonzero(sun.mask), n, replace=False)
    if kind == "NaN/inf":
        flux[where] = np.where(np.arange(n) % 2 == 0, np.nan, np.inf)
    elif kind == "negative":
        flux[where] = -flux[where]
    else:  # cosmic rays: charge added whatever the star's flux
        flux[where] += 3.0 * np.median(sun.flux[sun.mask])
    return flux


def bad_pixel_cases(predictor, sun: Spectrum, clean: dict, draws: int, rng) -> float:
    """Scattered bad pixels; returns the largest Δ/σ of the 2000-pixel NaN/inf draws."""
    worst = 0.0
    for kind, counts in (("NaN/inf", BAD_COUNTS), ("negative", (2000,)), ("cosmic-ray", (2000,))):
        for n in counts:
            for draw in range(draws):
                row = answer(predictor, with_flux(sun, damaged(sun, kind, n, rng)))
                print(line(f"{n} {kind} pixels ({100 * n / sun.flux.size:.2f} %), draw {draw + 1}",
                           row, clean))
                worst = max(worst, shift(row, clean)) if (kind, n) == ("NaN/inf", 2000) else worst
    original = pixels.REPAIR_SPAN_A
    pixels.REPAIR_SPAN_A = 0.0  # masked and filled at the continuum only, not repaired
    try:
        for draw in range(draws):
            row = answer(predictor, with_flux(sun, damaged(sun, "NaN/inf", 2000, rng)))
            print(line(f"2000 NaN/inf pixels, repair off, draw {draw + 1}", row, clean))
    finally:
        pixels.REPAIR_SPAN_A = original
    return worst


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=3, help="random draws per bad-pixel case")
    args = parser.parse_args(argv)
    predictor = Predictor.load(DEFAULT_MODEL, DEFAULT_PROFILE)
    sun = read_spectrum(paths.shared_file(SUN))
    sun = dataclasses.replace(sun, path=None)
    rng = np.random.default_rng(22)
    print(f"model {DEFAULT_PROFILE}/{DEFAULT_MODEL}; columns: " + ", ".join(LABEL_NAMES)
          + "; Δ/σ: largest |Δ label| / σ_stat over the labels")
    clean = answer(predictor, sun)
    print(line("HARPS Sun as read (reference for bad pixels)", clean, None))
    gap_cases(predictor, sun, rng)
    worst = bad_pixel_cases(predictor, sun, clean, args.draws, rng)
    print(f"max_shift_sigma_2000: {worst:.2f}")


if __name__ == "__main__":
    main()
