"""Where log g is lost on real stars: the network's answer beside a classical least-squares fit
of the same synthetic spectra, and the log g the pixels want with Teff and [M/H] held at the
star's reference — over the whole window and over the pressure-broadened wings of Mg b alone.

If the least-squares fit finds log g close to the reference where the network does not, the
network reads the synthetic gap more strongly than the pixels do (its valley, its training
distribution); if the held-label fit also wants a low log g, the synthesis itself (which
features: the wings of the strong lines, or the many weak lines) does. Nothing is fitted to
the stars here: this only measures (issue 31, part 6).

The fits are :func:`paper_lib.predict.refine.refine` (bounded least squares on the grid around
a start, the Jacobian by finite differences) with a mask that selects pixels.
"""

from __future__ import annotations

import numpy as np

from ..labels import LABEL_NAMES
from ..plotting import MG_B

MGB_WING_A = (0.35, 4.0)  # Å from a Mg b line's centre: inside the wing, outside the core
MGB_WINDOW_A = (5160.0, 5190.0)  # Å, the three lines' region


def mgb_wing_mask(order_wave) -> np.ndarray:
    """(8, 4096) True on pixels in the wings of the Mg b lines (rest-frame air Å): between
    MGB_WING_A[0] and MGB_WING_A[1] from a line's centre, within MGB_WINDOW_A, and farther than
    MGB_WING_A[0] from every other Mg b centre."""
    wave = np.asarray(order_wave, dtype=np.float64)
    distance = np.min([np.abs(wave - centre) for centre in MG_B.values()], axis=0)
    inside = (wave >= MGB_WINDOW_A[0]) & (wave <= MGB_WINDOW_A[1])
    return inside & (distance >= MGB_WING_A[0]) & (distance <= MGB_WING_A[1])


def held_label_fit(inp, render, reference: dict, start, mask=None):
    """The least-squares log g (and v sin i) of a prepared input with Teff and [M/H] held at
    the ``reference`` (±1 K, ±0.001 dex), over ``mask`` & the input's data mask; log g starts
    at ``start``'s, or at the reference's where that lies in a hole of the grid."""
    from ..predict.known import KnownLabel
    from ..predict.refine import refine
    from ..synthetic.grid import OutsideGridError

    known = [KnownLabel("teff", reference["teff"], 1.0), KnownLabel("mh", reference["mh"], 1e-3)]
    use = inp.mask if mask is None else (inp.mask & mask)
    start = np.array(start, dtype=np.float64)
    start[0], start[2] = reference["teff"], reference["mh"]
    try:
        return refine(inp.image, use, start, render, known)
    except OutsideGridError:
        start[1] = reference["logg"]
        return refine(inp.image, use, start, render, known)


def diagnose(spectra, grid, model=None, profile: str = "cpu") -> list[dict]:
    """Per benchmark spectrum: the network's raw answer (a calibrator star of its line mask
    read by the network blind to the mask made without it: ``benchmark_stars.star_readers``),
    the least-squares fit on the profile's shipped emulator from it (if there is one), the
    all-free least-squares fit of the grid — started from the network's answer and from the
    emulator fit's, the lower residual kept (a fit from one start can stop in a shallower
    minimum: on a real star χ² is flat along the Teff–log g–[M/H] valley) — and the log g
    wanted with Teff and [M/H] held at the reference (whole window; Mg b wings alone); Δ
    against the reference throughout. A fit that cannot run (a
    start or a held label outside the grid's complete cells) gives NaN and its reason."""
    from ..echelle.layout import order_wavelengths
    from ..observed.model_input import to_model_input
    from ..observed.read import read_spectrum
    from ..predict.forward import GridRenderer
    from .benchmark_stars import star_readers
    from ..echelle.line_mask import calibrator_of

    predictor, readers = star_readers(model, profile)
    render = GridRenderer(grid)
    emulator = _emulator_fitter(profile)
    wings = mgb_wing_mask(order_wavelengths())
    out = []
    for s in spectra:
        row = {"star": s.star, "file": s.path.name, "counted": s.counted, "notes": []}
        answers = _answers(s.path, readers.get(calibrator_of(s), predictor), emulator, row)
        if answers is None:
            out.append(row)
            continue
        inp = to_model_input(read_spectrum(s.path), template=grid)
        starts = [answers["network"]] + ([answers["emulator_fit"]] if "emulator_fit" in answers else [])
        for name, labels in answers.items():
            row[name] = dict(zip(LABEL_NAMES[:3], labels[:3]))
        fits = {"least_squares": lambda: _best_grid_fit(inp, render, starts),
                "held_whole": lambda: held_label_fit(inp, render, s.reference, starts[0]),
                "held_mgb_wings": lambda: held_label_fit(inp, render, s.reference, starts[0], wings)}
        _run_fits(fits, row)
        for name in ("network", "emulator_fit", *fits):
            if name in row:
                row[f"delta_{name}"] = {k: float(row[name][k] - s.reference[k])
                                        for k in ("teff", "logg", "mh")}
        out.append(row)
    return out


def _emulator_fitter(profile):
    """The profile's shipped emulator fitter, or None when there is none."""
    from ..predict.rows import refinement_renderer

    try:
        return refinement_renderer(None, profile)
    except ValueError:
        return None


def _answers(path, predictor, emulator, row) -> dict | None:
    """{"network": labels (4,), "emulator_fit": labels (4,) when fitted} of one spectrum (raw),
    or None with the error in ``row["notes"]``."""
    from ..predict import predict_rows

    answer, = predict_rows([path], predictor, calibrate=False, progress=False,
                           refine=emulator or False)
    if answer["error"]:
        row["notes"].append(answer["error"])
        return None
    out = {"network": np.array([answer[f"{k}_network"] for k in LABEL_NAMES])}
    if emulator is not None and np.isfinite(answer["teff_fit"]):
        out["emulator_fit"] = np.array([answer[f"{k}_fit"] for k in LABEL_NAMES])
        row["emulator_fit_flags"] = [f for f in answer["flags"] if f.startswith(("fit_", "refine"))]
    return out


def _best_grid_fit(inp, render, starts):
    """The all-free grid fit from each of ``starts`` (4,) with the lowest residual RMS; raises
    the last start's error if none can run."""
    from ..predict.refine import refine
    from ..synthetic.grid import OutsideGridError

    best, error = None, None
    for start in starts:
        try:
            fitted = refine(inp.image, inp.mask, start, render)
        except (OutsideGridError, ValueError) as problem:
            error = problem
            continue
        if best is None or fitted.rms < best.rms:
            best = fitted
    if best is None:
        raise error
    return best


def _run_fits(fits: dict, row: dict) -> None:
    """Each fit's labels (and whether it converged) into ``row``, or its reason into notes."""
    from ..synthetic.grid import OutsideGridError

    for name, fit in fits.items():
        try:
            result = fit()
            row[name] = dict(zip(LABEL_NAMES[:3], result.labels[:3]))
            row[f"{name}_converged"] = result.converged
        except (OutsideGridError, ValueError) as error:
            row["notes"].append(f"{name}: {error}")


def diagnosis_markdown(rows: list[dict]) -> str:
    """The diagnosis as a Markdown table: Δ of the network, of the emulator fit, of the all-free
    grid fit, and the Δlog g wanted with Teff and [M/H] at the reference (whole window; Mg b
    wings)."""
    def triple(row, name):
        d = row.get(f"delta_{name}")
        return "–" if d is None else f"{d['teff']:+.0f} K, {d['logg']:+.2f}, {d['mh']:+.2f}"

    def logg(row, name):
        d = row.get(f"delta_{name}")
        return "–" if d is None else f"{d['logg']:+.2f}"

    lines = ["| star (file) | network Δ Teff, log g, [M/H] | emulator fit | grid least squares, "
             "all free | Δlog g wanted at the reference Teff, [M/H]: whole window | Mg b wings "
             "alone |", "|---|---|---|---|---|---|"]
    for row in rows:
        star = row["star"].split(" (")[0] + ("" if row["counted"] else " (not counted)")
        lines.append(f"| {star} ({row['file']}) | {triple(row, 'network')} | "
                     f"{triple(row, 'emulator_fit')} | {triple(row, 'least_squares')} | "
                     f"{logg(row, 'held_whole')} | {logg(row, 'held_mgb_wings')} |")
    return "\n".join(lines)
