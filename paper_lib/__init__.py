"""paper_lib: reproduce Hüttel & Clemmensen (NLDL 2021) from real synthetic spectra.

Laid out in data-flow order (docs/architecture.md has the map):
``synthetic`` (Turbospectrum → grid → broadening) → ``echelle`` (layout, continuum, generator,
test sets) → ``models`` / ``losses`` / ``training`` → ``evaluation``; ``observed`` brings real
spectra to the same input and ``predict`` answers in physical units. ``labels``, ``instrument``
and ``profiles`` hold the facts every stage shares; ``experiments`` and ``notebook`` serve the
notebooks, ``cli`` is ``python -m paper_lib``.
"""

__version__ = "0.1.0"


def __getattr__(name):
    """``paper_lib.predict(paths_or_spectra, model=..., rv=None)`` without importing torch at
    ``import paper_lib``: the callable package :mod:`paper_lib.predict`, loaded on first use."""
    if name == "predict":
        import importlib

        return importlib.import_module(".predict", __name__)
    raise AttributeError(f"module 'paper_lib' has no attribute {name!r}")
