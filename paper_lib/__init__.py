"""paper_lib: reproduce Hüttel & Clemmensen (NLDL 2021) from real synthetic spectra.

Laid out in data-flow order (docs/architecture.md has the map):
``synthetic`` (Turbospectrum → grid → broadening) → ``echelle`` (layout, continuum, generator,
test sets) → ``models`` / ``losses`` / ``training`` → ``evaluation``; ``observed`` brings real
spectra to the same input and ``predict`` answers in physical units. ``labels``, ``instrument``
and ``profiles`` hold the facts every stage shares; ``experiments`` and ``notebook`` serve the
notebooks, ``cli`` is ``python -m paper_lib``.
"""

__version__ = "0.1.0"
