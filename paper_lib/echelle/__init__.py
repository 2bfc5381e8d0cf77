"""Stage 2 — from synthetic spectra to the networks' 8 × 4096 HARPS-N images.

* :mod:`~paper_lib.echelle.layout` – the 8 orders' pixel wavelengths (a real HARPS-N
  calibration), resampling onto them, the blaze, back to 1D for figures;
* :mod:`~paper_lib.echelle.continuum` – the slant of each order and the one continuum
  normalisation, shared by synthetic and real spectra;
* :mod:`~paper_lib.echelle.generator` – :class:`~paper_lib.echelle.generator.SpectrumGenerator`:
  random labels → interpolated, broadened, resampled, slanted, noisy, normalised images;
* :mod:`~paper_lib.echelle.steps` – its two tensor steps, compiled by ``torch.compile``;
* :mod:`~paper_lib.echelle.testsets` – fixed, seeded, cached test sets.
"""
