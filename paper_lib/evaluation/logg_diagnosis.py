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
    """Per benchmark spectrum: the network's raw answer, the all-free least-squares fit from it,
    and the log g wanted with Teff and [M/H] held at the reference (whole window; Mg b wings
    alone); Δ against the reference throughout. A fit that cannot run (a start or a held label
    outside the grid's complete cells) gives NaN and its reason."""
    from ..echelle.layout import order_wavelengths
    from ..observed.model_input import to_model_input
    from ..observed.read import read_spectrum
    from ..predict import DEFAULT_MODEL, predict_rows
    from ..predict.refine import Renderer, refine
    from ..synthetic.grid import OutsideGridError

    render = Renderer(grid)
    wings = mgb_wing_mask(order_wavelengths())
    out = []
    for s in spectra:
        row = {"star": s.star, "file": s.path.name, "counted": s.counted, "notes": []}
        network, = predict_rows([s.path], model or DEFAULT_MODEL, profile=profile,
                                calibrate=False, progress=False)
        if network["error"]:
            row["notes"].append(network["error"])
            out.append(row)
            continue
        start = np.array([network[k] for k in LABEL_NAMES])
        inp = to_model_input(read_spectrum(s.path), template=grid)
        row["network"] = dict(zip(LABEL_NAMES[:3], start[:3]))
        fits = {"least_squares": lambda: refine(inp.image, inp.mask, start, render),
                "held_whole": lambda: held_label_fit(inp, render, s.reference, start),
                "held_mgb_wings": lambda: held_label_fit(inp, render, s.reference, start, wings)}
        for name, fit in fits.items():
            try:
                result = fit()
                row[name] = dict(zip(LABEL_NAMES[:3], result.labels[:3]))
                row[f"{name}_converged"] = result.converged
            except (OutsideGridError, ValueError) as error:
                row["notes"].append(f"{name}: {error}")
        for name in ("network", *fits):
            if name in row:
                row[f"delta_{name}"] = {k: float(row[name][k] - s.reference[k])
                                        for k in ("teff", "logg", "mh")}
        out.append(row)
    return out


def diagnosis_markdown(rows: list[dict]) -> str:
    """The diagnosis as a Markdown table: Δ of the network, of the all-free fit, and the Δlog g
    wanted with Teff and [M/H] at the reference (whole window; Mg b wings)."""
    def triple(row, name):
        d = row.get(f"delta_{name}")
        return "–" if d is None else f"{d['teff']:+.0f} K, {d['logg']:+.2f}, {d['mh']:+.2f}"

    def logg(row, name):
        d = row.get(f"delta_{name}")
        return "–" if d is None else f"{d['logg']:+.2f}"

    lines = ["| star (file) | network Δ Teff, log g, [M/H] | least squares, all free | "
             "Δlog g wanted at the reference Teff, [M/H]: whole window | Mg b wings alone |",
             "|---|---|---|---|---|"]
    for row in rows:
        star = row["star"].split(" (")[0] + ("" if row["counted"] else " (not counted)")
        lines.append(f"| {star} ({row['file']}) | {triple(row, 'network')} | "
                     f"{triple(row, 'least_squares')} | {logg(row, 'held_whole')} | "
                     f"{logg(row, 'held_mgb_wings')} |")
    return "\n".join(lines)
