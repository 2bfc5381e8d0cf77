"""A read spectrum on the networks' input grid: rest frame, training pixels, normalised, filled."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..echelle.continuum import normalise_orders
from ..echelle.layout import order_wavelengths
from ..instrument import C_KMS
from ..synthetic.resample import uniform_cubic_weights
from .checks import matching_rows, order_ranges, used_rows
from .pixels import clean_spectrum
from .spectrum import Spectrum, file_error
from .template import SOLAR_NODE, load_template, load_template_highpass
from .velocity import DEFAULT_V_RANGE, Velocity, measure_velocity, to_rest_frame

FILL_VALUE = 1.0  # continuum level written into pixels without data
SAMPLING_JUMP = 3.0  # a wavelength step this many times the median one is a hole in the data
WINDOW_MARGIN_A = 10.0  # a 1D spectrum is cut to the orders' range at the velocities ± this [Å]
GIVEN_RV_SEARCH_KMS = 200.0  # a given RV is checked by a CCF over ±1000 km/s and ± this around it


@dataclass
class ModelInput:
    """A spectrum on the networks' input grid.

    Attributes
    ----------
    image : float32 (8, 4096) – continuum-normalised flux on the training wavelengths,
        FILL_VALUE (1.0) where ``mask`` is False.
    mask : bool (8, 4096) – True where the pixel holds real data, False where it was filled.
    rv_kms : float – radial velocity removed [km/s] (λ_rest = λ_obs / (1 + v/c)).
    gap_fraction : float – fraction of the 32 768 pixels that were filled.
    bad_pixel_fraction : float – fraction of the observed pixels used that were bad (NaN, inf,
        ≤ 0 or spikes) and repaired from their neighbours (:mod:`paper_lib.observed.pixels`).
    order_wave : float64 (8, 4096) – rest-frame air wavelengths of the pixels [Å].
    kind, path : of the source spectrum.
    meta : dict – rows used, template description, source meta.
    velocity : the measured velocity with its CCF quality, None when ``rv_kms`` was given.
    ccf : the spectrum's own CCF peak against the template, measured whether or not
        ``rv_kms`` was given (then it checks it); None when the CCF has no peak (a spectrum
        without lines, e.g. flat), the reason in ``meta["ccf_error"]``.
    """

    image: np.ndarray
    mask: np.ndarray
    rv_kms: float
    gap_fraction: float
    order_wave: np.ndarray
    kind: str
    path: Path | None = None
    meta: dict = field(default_factory=dict)
    velocity: Velocity | None = None
    bad_pixel_fraction: float = 0.0
    ccf: Velocity | None = None


def _template_arrays(template, node) -> tuple[np.ndarray, np.ndarray, str]:
    """(wave, flux, description) from a Grid-like object, a (wave, flux) pair, or None: the
    template shipped with the package (:mod:`paper_lib.observed.template`)."""
    if template is None:
        return (*load_template(), "shipped template (paper_lib/data/rv_template.npz)")
    if hasattr(template, "node_flux") and hasattr(template, "wavelength"):
        teff, logg, mh = node
        return (np.asarray(template.wavelength, dtype=np.float64),
                np.asarray(template.node_flux(teff, logg, mh), dtype=np.float64),
                f"grid node Teff={teff:g} K, log g={logg:g}, [M/H]={mh:+g}")
    wave, flux = template
    return np.asarray(wave, dtype=np.float64), np.asarray(flux, dtype=np.float64), "user template"


def _resample_segment(wave, flux, valid, target) -> tuple[np.ndarray, np.ndarray]:
    """Keys-cubic resampling of one segment onto ``target`` [Å] in its own pixel coordinate.

    Returns (values, ok): ok is False where ``target`` lies outside the segment, where a
    pixel carrying interpolation weight is invalid, or where the interpolation would bridge a
    hole in the sampling (a step > SAMPLING_JUMP × the median step); values are NaN there.
    """
    values = np.full(target.shape, np.nan)
    ok = np.zeros(target.shape, dtype=bool)
    inside = (target >= wave[0]) & (target <= wave[-1])
    if inside.sum() == 0 or wave.size < 4:
        return values, ok
    position = np.interp(target[inside], wave, np.arange(wave.size, dtype=np.float64))
    nodes, weights = uniform_cubic_weights(position, wave.size)
    clean = np.where(valid, flux, 0.0)
    steps = np.diff(wave)
    jump_after = np.append(steps > SAMPLING_JUMP * np.median(steps), False)  # holes in λ
    usable = (np.all(valid[nodes] | (weights == 0), axis=-1)
              & ~np.any(jump_after[nodes[:, :-1]], axis=-1))
    values[inside] = np.where(usable, (clean[nodes] * weights).sum(-1), np.nan)
    ok[inside] = usable
    return values, ok


def _rest_frame_image(spectrum: Spectrum, v_kms: float, order_wave: np.ndarray, rows=None):
    """(image, valid), each (8, 4096): the spectrum in the rest frame on the training pixels.

    ``rows`` (échelle spectra only) gives the observed rows resampled onto each training order,
    the best-overlapping first; a later row only fills pixels that the earlier ones leave
    without data (e.g. the HARPS gap between its two CCDs, or an order's ends).
    """
    image = np.full(order_wave.shape, np.nan)
    valid = np.zeros(order_wave.shape, dtype=bool)
    stretch = 1.0 + v_kms / C_KMS
    for k, target in enumerate(order_wave):
        if spectrum.is_echelle:
            parts = [(spectrum.wave[r], spectrum.flux[r], spectrum.mask[r]) for r in rows[k]]
        else:
            first = max(int(np.searchsorted(spectrum.wave, target[0] * stretch)) - 4, 0)
            part = slice(first, int(np.searchsorted(spectrum.wave, target[-1] * stretch)) + 4)
            parts = [(spectrum.wave[part], spectrum.flux[part], spectrum.mask[part])]
        for wave, flux, good in parts:
            values, ok = _resample_segment(to_rest_frame(wave, v_kms), flux, good, target)
            fill = ok & ~valid[k]
            image[k, fill] = values[fill]
            valid[k] |= fill
    return image, valid


def _window(order_wave: np.ndarray, velocities, margin_a: float = WINDOW_MARGIN_A
            ) -> tuple[float, float]:
    """The observed wavelengths [Å] a 1D spectrum needs: the orders' range at every velocity
    in ``velocities`` (km/s; searched or given), widened by ``margin_a``."""
    lo = order_wave.min() * (1 + min(velocities) / C_KMS) - margin_a
    hi = order_wave.max() * (1 + max(velocities) / C_KMS) + margin_a
    return float(lo), float(hi)


def _ccf_input(spectrum: Spectrum, rows=None):
    """(wave, flux, mask) of the part of ``spectrum`` used to measure the velocity: the rows
    matching the orders (échelle), or the whole (1D spectra are already cut to _window)."""
    if spectrum.is_echelle:
        used = used_rows(rows)
        return spectrum.wave[used], spectrum.flux[used], spectrum.mask[used]
    return spectrum.wave, spectrum.flux, spectrum.mask


def to_model_input(spectrum: Spectrum, template=None, *, rv_kms: float | None = None,
                   order_wave=None, template_node=SOLAR_NODE,
                   v_range=DEFAULT_V_RANGE) -> ModelInput:
    """The 8 × 4096 network input of a real spectrum (see the module docstring for the steps).

    Parameters
    ----------
    spectrum : Spectrum from :func:`read_spectrum` (e2ds/s2d blaze-corrected, s1d, text).
    template : None (default: the solar-like template shipped in ``paper_lib/data``, see
        :mod:`paper_lib.observed.template`), a grid (anything with ``.wavelength`` and
        ``.node_flux(teff, logg, mh)``, e.g. :class:`paper_lib.synthetic.grid.Grid`; its
        ``template_node`` is used, by default the solar-like node 5750 K, 4.5, 0.0) or a
        rest-frame ``(wave [Å], flux)`` pair. With ``rv_kms`` given it still gives the CCF
        that checks it (``ModelInput.ccf``).
    rv_kms : radial velocity [km/s] to remove instead of measuring it (0.0 disables the shift).
    order_wave : (8, 4096) training wavelengths [Å]; default
        :func:`paper_lib.echelle.layout.order_wavelengths`.
    v_range : velocities searched by :func:`measure_velocity` [km/s] (default ±1000); the
        velocity and its CCF quality are returned in ``ModelInput.velocity``.

    First :func:`paper_lib.observed.pixels.clean_spectrum` masks the instrument's CCD gap by
    wavelength, refuses negative flux and repairs short runs of bad pixels (NaN, inf, ≤ 0,
    cosmic-ray spikes) from their neighbours. Pixels still without data — the gap, longer runs
    of bad pixels, bad quality flags, and pixels that the rest-frame shift moves beyond the
    end of an observed order — are ignored
    by the continuum fit and then **filled with 1.0** (the continuum of a normalised
    spectrum). The networks were trained on complete, gap-free synthetic images and have no
    notion of a missing pixel: a 0 or NaN there would look like a saturated absorption line or
    break the arithmetic, whereas 1.0 says "no absorption here", the least informative value
    a normalised spectrum can hold. The lines that fall in a gap are still lost, so predictions
    can differ from those for a complete spectrum; ``mask`` (True = real data) and
    ``gap_fraction`` say how much was filled (≈ 7–8 % for the HARPS CCD gap).

    Raises SpectrumFileError (naming the file) if the flux is negative, the velocity cannot be
    measured or an order cannot be normalised, e.g. because it has almost no valid pixels.
    """
    if rv_kms is not None and not abs(float(rv_kms)) < C_KMS:
        raise ValueError(f"rv_kms = {rv_kms}: give a finite radial velocity below c [km/s]")
    order_wave = order_wavelengths() if order_wave is None else np.asarray(order_wave)
    meta = {"source": dict(spectrum.meta)}
    rows = None
    if spectrum.is_echelle:
        if not spectrum.meta.get("blaze_corrected", False):
            raise file_error(spectrum.path, "the échelle flux is not blaze-corrected (read the file "
                                            "with read_spectrum or read_e2ds)", "blaze")
        rows = meta["rows"] = matching_rows(spectrum.wave, order_wave, path=spectrum.path)
    velocities = v_range if rv_kms is None else (float(rv_kms), float(rv_kms))
    spectrum, bad_fraction = clean_spectrum(spectrum, order_ranges(order_wave),
                                            rows and used_rows(rows), _window(order_wave, velocities))
    meta["gaps_masked_A"] = spectrum.meta["gaps_masked_A"]
    velocity, ccf = _velocities(spectrum, rows, template, template_node, rv_kms, v_range, meta)
    rv_kms = velocity.v_kms if rv_kms is None else rv_kms
    image, valid = _rest_frame_image(spectrum, float(rv_kms), order_wave, rows)
    try:
        normalised = normalise_orders(image, mask=~valid)
    except ValueError as error:
        counts = ", ".join(str(int(n)) for n in valid.sum(axis=1))
        raise file_error(spectrum.path, f"cannot normalise the orders ({error}); valid pixels per "
                     f"order: {counts}") from None
    normalised = np.where(valid, normalised, FILL_VALUE).astype(np.float32)
    if not np.all(np.isfinite(normalised)):
        raise file_error(spectrum.path, "the normalised image contains NaN or inf")
    return ModelInput(image=normalised, mask=valid, rv_kms=float(rv_kms),
                      gap_fraction=float(1.0 - valid.mean()), order_wave=order_wave,
                      kind=spectrum.kind, path=spectrum.path, meta=meta, velocity=velocity,
                      bad_pixel_fraction=float(bad_fraction), ccf=ccf)


def _velocities(spectrum: Spectrum, rows, template, template_node, rv_kms, v_range, meta):
    """(measured velocity or None, the CCF peak or None) of a cleaned spectrum: with ``rv_kms``
    None the velocity is measured over ``v_range`` (SpectrumFileError naming the fix if it
    cannot be); with a given ``rv_kms`` the CCF is still measured, over ``v_range`` widened
    to ±GIVEN_RV_SEARCH_KMS around it, to check it (None and ``meta["ccf_error"]`` if it has
    no peak). Records ``rv_source`` and the template in ``meta``."""
    t_wave, t_flux, meta["template"] = _template_arrays(template, template_node)
    wave, flux, mask = _ccf_input(spectrum, rows)
    given = rv_kms is not None
    if given:
        v_range = (min(v_range[0], rv_kms - GIVEN_RV_SEARCH_KMS),
                   max(v_range[1], rv_kms + GIVEN_RV_SEARCH_KMS))
    meta["rv_source"] = "given" if given else "cross-correlation"
    try:
        ccf = measure_velocity(wave, flux, t_wave, t_flux, v_range, mask=mask,
                               template_highpass=(load_template_highpass()
                                                  if template is None else None))
    except ValueError as error:
        if given:
            meta["ccf_error"] = str(error)
            return None, None
        raise file_error(spectrum.path, f"the radial velocity could not be measured ({error}; "
                         "a spectrum without stellar lines has none)", "rv") from None
    return (None, ccf) if given else (ccf, ccf)
