"""The shipped line mask as a record: where it lives, its folds and its pixels.

``models/<profile>/line_mask.json`` (made by ``python -m paper_lib line-mask``:
:func:`paper_lib.evaluation.line_mask.make_line_mask`, from the shipped emulator and the
calibrator stars) holds, per fold of :func:`fold_names`, the rest-frame wavelength intervals
((lo, hi) Å) that a ``_real`` network never sees. A profile's ``line_mask`` names whose file it
trains with (:func:`line_mask_intervals`); the network keeps the intervals' pixels on the
HARPS-N layout (:func:`pixel_runs`) in its architecture record. This module only reads the
record, so the training code can use it without the evaluation code that makes it.
"""

from __future__ import annotations

import numpy as np

CALIBRATOR_STARS = ("Sun", "Arcturus")  # benchmark-set star names begin so (references.csv)
LINE_MASK_FILE = "line_mask.json"
FOLDS_DIR = "line_mask_folds"  # models/<profile>/<this>/<fold>/: the leave-one-out networks


def calibrator_of(spectrum, calibrators=CALIBRATOR_STARS) -> str | None:
    """The calibrator star a benchmark spectrum belongs to (by its star name), or None."""
    return next((name for name in calibrators if spectrum.star.startswith(name)), None)


def fold_names(calibrators=CALIBRATOR_STARS) -> dict:
    """{fold: calibrator left out}: ``all`` (None) and ``without_<star>`` for each star."""
    return {"all": None, **{f"without_{name.lower()}": name for name in calibrators}}


def true_runs(row) -> list:
    """(first, stop) of each run of True in the boolean ``row`` (stop exclusive)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(row, dtype=np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def pixel_runs(intervals, order_wave=None) -> list:
    """The masked pixels of ``intervals`` ((lo, hi) Å) on ``order_wave`` (default: the HARPS-N
    layout) as runs [[order, first, stop], …] (stop exclusive): a network's ``hidden_runs``."""
    from .layout import order_wavelengths
    from .realism import masked_pixels

    hidden = masked_pixels(order_wavelengths() if order_wave is None else order_wave, intervals)
    return [[order, first, stop] for order, row in enumerate(hidden)
            for first, stop in true_runs(row)]


def read_line_mask(profile) -> dict | None:
    """The line-mask record a profile trains its ``_real`` variant with (``profile.line_mask``
    names whose models/ folder holds it), or None when the profile has none. A named file that
    is missing or unreadable raises, saying how to make it."""
    import json

    from .. import paths
    from ..profiles import get_profile

    profile = get_profile(profile)
    if not profile.line_mask:
        return None
    path = paths.models / profile.line_mask / LINE_MASK_FILE
    remake = (f"python -m paper_lib line-mask --profile {profile.line_mask} (needs the "
              "benchmark stars and that profile's emulator)")
    try:
        record = json.loads(path.read_text())
        record["folds"]["all"]["intervals"]
    except FileNotFoundError:
        raise FileNotFoundError(f"profile {profile.name!r} trains with the line mask {path}, "
                                f"which is missing: make it with {remake}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a line-mask record ({err}); remake it with "
                         f"{remake}") from None
    return record


def line_mask_intervals(profile, fold: str = "all") -> tuple:
    """The rest-frame intervals ((lo, hi) Å, …) of a fold of the profile's line mask (() when
    the profile has none)."""
    record = read_line_mask(profile)
    if record is None:
        return ()
    if fold not in record["folds"]:
        raise ValueError(f"the line mask has no fold {fold!r}; it has {', '.join(record['folds'])}")
    return tuple(tuple(i) for i in record["folds"][fold]["intervals"])
