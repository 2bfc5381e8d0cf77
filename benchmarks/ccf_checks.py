"""What the CCF checks of `predict` see: the numbers behind the thresholds of
``no_stellar_lines``, ``vsini_beyond_grid`` and ``rv_mismatch`` (:mod:`paper_lib.predict.flags`).

For the shipped RV template (``paper_lib/data/rv_template.npz``) rotated to v sin i 0.5–150 km/s
(Gray's profile, ε = 0.6) and with Gaussian noise at SNR 5–20, for pure noise and a flat
spectrum, and for the real HARPS Sun and Gl 581 of ../shared/data, it prints the CCF peak
against the template (:func:`paper_lib.observed.velocity.measure_velocity`, ±1000 km/s): the
velocity, the significance, the best other peak and the peak's full width at half height; then
the width threshold ``max_ccf_width_kms()`` and the flags each case gets.

    python benchmarks/ccf_checks.py
"""

from __future__ import annotations

import numpy as np

from paper_lib import paths
from paper_lib.observed.read import read_spectrum
from paper_lib.observed.template import TEMPLATE_STEP_KMS, load_template, load_template_highpass
from paper_lib.observed.velocity import measure_velocity
from paper_lib.predict.flags import NO_LINES_SIGNIFICANCE, max_ccf_width_kms
from paper_lib.synthetic.broadening import rotation_kernel

REAL = {"HARPS Sun (Ganymede)": "sun/Sun_HARPS_Ganymede_s1d.fits",
        "Gl 581 (HARPS s1d)": "harps_e2ds/HARPS.2010-09-18T23:42:36.178_s1d_A.fits"}


def cases() -> dict:
    """{name: (wave [Å], flux)} of the spectra looked at."""
    wave, flux = load_template()
    rng = np.random.default_rng(1)
    out = {}
    for vsini in (0.5, 2.0, 10.0, 20.0, 30.0, 40.0, 60.0, 150.0):
        kernel = np.asarray(rotation_kernel(vsini, TEMPLATE_STEP_KMS)).ravel()
        out[f"template, v sin i {vsini:g} km/s"] = (wave, np.convolve(flux, kernel / kernel.sum(),
                                                                      mode="same"))
    for snr in (5.0, 10.0, 20.0):
        out[f"template, SNR {snr:g}"] = (wave, flux + rng.normal(0.0, 1.0 / snr, flux.size))
    for sigma in (0.01, 0.2):
        out[f"pure noise, σ {sigma:g}"] = (wave, 1.0 + rng.normal(0.0, sigma, flux.size))
    out["flat (all ones)"] = (wave, np.ones_like(flux))
    for name, relative in REAL.items():
        try:
            spectrum = read_spectrum(paths.shared_file(relative))
        except (FileNotFoundError, ValueError) as error:
            print(f"{name}: skipped ({error})")
            continue
        out[name] = (spectrum.wave, spectrum.flux)
    return out


def main() -> None:
    t_wave, t_flux = load_template()
    highpass = load_template_highpass()
    widest = max_ccf_width_kms()
    print(f"{'spectrum':34s} {'v [km/s]':>9s} {'signif.':>8s} {'other':>6s} {'width':>7s}  flags")
    for name, (wave, flux) in cases().items():
        try:
            peak = measure_velocity(wave, flux, t_wave, t_flux, template_highpass=highpass)
        except ValueError as error:
            print(f"{name:34s} no CCF peak ({error})  no_stellar_lines")
            continue
        broad = peak.width_kms > widest
        flags = (["vsini_beyond_grid"] if broad else []) + (
            ["no_stellar_lines"] if peak.significance < NO_LINES_SIGNIFICANCE and not broad else [])
        print(f"{name:34s} {peak.v_kms:9.2f} {peak.significance:8.1f} {peak.second_peak:6.2f} "
              f"{peak.width_kms:7.1f}  {' '.join(flags) or '-'}")
    print(f"max_ccf_width_kms: {widest:.1f} (no_stellar_lines below significance "
          f"{NO_LINES_SIGNIFICANCE:g})")


if __name__ == "__main__":
    main()
