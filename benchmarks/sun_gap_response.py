"""How the committed `cpu` networks respond to the synthetic gap of the real Sun, and why.

Uses the smoke grid (``python -m paper_lib synth --profile smoke``: the 14 nodes around the Sun,
the same nodes the full grid interpolates there, so the images are those of the `cpu` grid) and
the committed weights in ``models/cpu/``:

    python benchmarks/sun_gap_response.py

prints, for both real solar spectra,

1. each network's answer on our noise-free synthetic Sun (the reference labels, the real
   spectrum's missing pixels filled with 1.0 as in the real input) and on the real spectrum, and
   the shift between them — for ``predict``'s default model, the paper's ``resnet_diagonal`` and
   ``attention_diagonal``;
2. the same on the real spectrum with extra noise at SNR 20 and 50 (mean of 16 draws): whether
   the shift depends on the photon noise;
3. where the shift comes from (:mod:`paper_lib.evaluation.attribution`, integrated gradients,
   the five largest 2 Å bins per label) for the default model;
4. the valley of a classical least-squares fit over all four labels
   (:func:`paper_lib.evaluation.gap.label_scan`): for each Teff the best log g and [M/H];
5. equivalent widths of isolated VALD3 lines (no other VALD3 line within ± 0.25 Å, EW summed over
   ± 0.15 Å, 5–150 mÅ in the synthetic Sun): the median log(EW_real / EW_synthetic) per class.

The last line is ``shift_mh: <default model's [M/H] shift on the HARPS Sun>``.
"""

from __future__ import annotations

import functools

import numpy as np

from paper_lib import experiments, paths
from paper_lib.evaluation import attribution as attr
from paper_lib.evaluation import gap
from paper_lib.labels import LABEL_NAMES, SUN_REFERENCE
from paper_lib.observed.model_input import to_model_input
from paper_lib.observed.read import read_spectrum
from paper_lib.predict import DEFAULT_MODEL, predict
from paper_lib.profiles import get_profile
from paper_lib.synthetic.grid import load_grid
from paper_lib.synthetic.linelists import VALD_FILE

SPECTRA = {"HARPS Sun": "sun/Sun_HARPS_Ganymede_s1d.fits", "UVES Sun": "sun/UVES_Sun-1_cleaned_norm.txt"}
NETWORKS = (DEFAULT_MODEL, "resnet_diagonal", "attention_diagonal")
NOISE_SNR = (20.0, 50.0)
NOISE_DRAWS = 16


def _fmt(labels) -> str:
    return f"{labels[0]:6.0f} K {labels[1]:5.2f} {labels[2]:+6.3f} {labels[3]:5.2f} km/s"


def print_line_ews(model_input, synthetic) -> None:
    rows = gap.isolated_line_ews(model_input, synthetic, vald_lines())
    excess = gap.line_strength_excess(rows)
    print(f"  isolated VALD3 lines, 5-150 mÅ in the synthetic Sun: {excess.pop('n')}")
    for name, (count, median) in excess.items():
        print(f"    {name:22s} n={count:3d}  median log(EW_real/EW_syn) {median:+.3f}")


def vald_lines():
    return gap.vald_solar_lines(paths.shared_file(VALD_FILE))


def main() -> None:
    cpu, smoke = get_profile("cpu"), get_profile("smoke")
    grid = load_grid(smoke)
    render = functools.partial(experiments.synthetic_images, grid)
    sun = np.array([SUN_REFERENCE[n] for n in LABEL_NAMES])
    models = {v: experiments.load_variant(cpu, v) for v in NETWORKS}
    rng = np.random.default_rng(0)
    default_shift = None
    for name, relative in SPECTRA.items():
        real = to_model_input(read_spectrum(paths.shared_file(relative)), template=grid)
        synthetic = experiments.synthetic_like_input(grid, real, sun)
        print(f"== {name}")
        for variant, model in models.items():
            (on_syn, on_real), _, _ = predict(model, np.stack([synthetic, real.image]).astype(np.float32))
            print(f"  {variant:22s} synthetic Sun {_fmt(on_syn)} | real {_fmt(on_real)} | shift "
                  f"{on_real[0] - on_syn[0]:+5.0f} K {on_real[1] - on_syn[1]:+.2f} {on_real[2] - on_syn[2]:+.3f}")
            for snr in NOISE_SNR:
                noise = rng.normal(0.0, 1.0 / snr, (NOISE_DRAWS,) + real.image.shape) * real.mask
                noisy, _, _ = predict(model, (real.image[None] + noise).astype(np.float32))
                print(f"  {'':22s} real + noise at SNR {snr:3.0f}: {_fmt(noisy.mean(axis=0))}")
        shares = experiments.gap_attribution(models[DEFAULT_MODEL], grid, real, sun)
        centres, binned = attr.binned_by_wavelength(shares.per_pixel, real.order_wave)
        print(f"  {DEFAULT_MODEL}: integrated gradients, completeness error "
              f"{np.round(shares.completeness_error, 4)} of shift {np.round(shares.shift, 3)}")
        for k, top in enumerate(attr.top_bins(centres, binned)[:3]):
            label, share = LABEL_NAMES[k], np.abs(binned[k])
            print(f"    {label:5s} top bins: " + ", ".join(f"{c:.0f} Å {v:+.3g}" for c, v in top)
                  + f"  (the 10 largest of {len(share)} bins carry {np.sort(share)[-10:].sum() / share.sum():.0%} of |shares|)")
        fit = gap.label_scan(real.image, real.mask, render, gap.solar_scan_axes(grid.bounds(smoke.label_box)))
        print(f"  least-squares best {fit['best']} RMS {fit['best_rms']:.5f}; valley: " + "; ".join(
            f"{row['teff']:.0f} K {row['logg']:.1f} {row['mh']:+.2f}" for row in fit["valley"]))
        print_line_ews(real, synthetic)
        if default_shift is None:
            default_shift = shares.shift[2]
    print(f"shift_mh: {default_shift:+.3f}")


if __name__ == "__main__":
    main()
