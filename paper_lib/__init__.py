"""paper_lib: reproduce Hüttel & Clemmensen (NLDL 2021) from real synthetic spectra.

One module per stage of the data flow (see README.md):
synthesis → grid → broadening → echelle → dataset → models/losses/training → evaluation,
with harpsn for real spectra and cli for ``python -m paper_lib``.
"""

__version__ = "0.1.0"
