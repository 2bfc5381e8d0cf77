"""The radial-velocity template that ships with the package, made by our own synthesis.

``predict`` measures radial velocities against a solar-like synthetic spectrum. So that it
needs no grid (the full one takes ~90 min to build), the template is a small package file,
``paper_lib/data/rv_template.npz`` (≈ 90 kB), with its provenance beside it in
``rv_template.json``: the grid node it comes from, the broadening, the synthesis physics
(:func:`paper_lib.synthetic.turbospectrum.physics_id`), the commit and the date.

:func:`make_template` builds it from any grid holding the solar-like node (the ``smoke`` grid
has it, so it takes ~2 min to remake from scratch); ``python -m paper_lib rv-template``
rewrites the shipped file (:func:`write_template`). A test checks that the shipped file is
what the code makes from today's smoke grid and that its physics id is today's.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import json

import numpy as np

from .. import paths
from ..fileio import atomic_write_bytes, atomic_write_json
from ..instrument import C_KMS, R
from .velocity import highpass_template

SOLAR_NODE = (5750.0, 4.5, 0.0)  # grid node closest to the Sun (5772 K, 4.44, 0.0)
TEMPLATE_FILE = paths.package_data / "rv_template.npz"
TEMPLATE_META = paths.package_data / "rv_template.json"
TEMPLATE_STEP_KMS = 1.0  # ln-λ step of the shipped template [km/s] (FWHM ≈ 3.5 km/s)
TEMPLATE_VSINI_KMS = 2.0  # the Sun's v sin i [km/s]


def make_template(grid, node=SOLAR_NODE) -> tuple[np.ndarray, np.ndarray]:
    """(wave [Å, air], flux) of ``grid``'s ``node`` on a ln-λ grid of TEMPLATE_STEP_KMS,
    broadened by rotation (TEMPLATE_VSINI_KMS) and the HARPS-N instrument profile (R)."""
    import torch

    from ..synthetic.broadening import broaden
    from ..synthetic.resample import log_lambda_grid

    wave = np.asarray(grid.wavelength, dtype=np.float64)
    log_wave = log_lambda_grid(wave[0], wave[-1], TEMPLATE_STEP_KMS)
    log_wave = log_wave[log_wave <= wave[-1]]
    flux = np.interp(log_wave, wave, np.asarray(grid.node_flux(*node), dtype=np.float64))
    broadened = broaden(torch.as_tensor(flux[None]), TEMPLATE_VSINI_KMS, TEMPLATE_STEP_KMS, R)
    return log_wave, broadened[0].numpy().astype(np.float32)


def write_template(grid, source: str) -> dict:
    """Write :func:`make_template` of ``grid`` and its provenance into the package; returns the
    provenance record. ``source`` says which grid it was (e.g. its path)."""
    from ..provenance import git_commit
    from ..synthetic.turbospectrum import physics_id

    wave, flux = make_template(grid)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, wave0=wave[0], n=len(wave), step_kms=TEMPLATE_STEP_KMS, flux=flux)
    atomic_write_bytes(TEMPLATE_FILE, buffer.getvalue())
    record = {"what": "radial-velocity template of paper_lib.predict",
              "node": dict(zip(("teff", "logg", "mh"), SOLAR_NODE)),
              "vsini_kms": TEMPLATE_VSINI_KMS, "R": R, "step_kms": TEMPLATE_STEP_KMS,
              "wave_range_A": [float(wave[0]), float(wave[-1])], "source_grid": source,
              "physics_id": physics_id(), **git_commit(),
              "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "made_by": "python -m paper_lib rv-template (paper_lib.observed.template)"}
    atomic_write_json(TEMPLATE_META, record)
    load_template.cache_clear()
    load_template_highpass.cache_clear()
    return record


def template_record() -> dict:
    """The provenance of the shipped template (``rv_template.json``)."""
    return json.loads(TEMPLATE_META.read_text())


@functools.lru_cache(maxsize=1)
def load_template() -> tuple[np.ndarray, np.ndarray]:
    """(wave [Å, air], flux) of the shipped template (read once; do not modify the arrays);
    FileNotFoundError says how to make it."""
    if not TEMPLATE_FILE.exists():
        raise FileNotFoundError(f"the radial-velocity template {TEMPLATE_FILE} is missing: make it "
                                "with `python -m paper_lib rv-template`, or pass --rv")
    with np.load(TEMPLATE_FILE) as data:
        n = int(data["n"])
        wave = float(data["wave0"]) * np.exp(np.arange(n) * float(data["step_kms"]) / C_KMS)
        return wave, data["flux"].astype(np.float64)


@functools.lru_cache(maxsize=1)
def load_template_highpass() -> np.ndarray:
    """The shipped template high-passed as the velocity search correlates it
    (:func:`paper_lib.observed.velocity.highpass_template`), computed once."""
    return highpass_template(*load_template())
