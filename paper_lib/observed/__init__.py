"""Stage 5 — real HARPS-N (and HARPS) spectra → the networks' 8 × 4096 input image.

The networks are trained on synthetic spectra laid out as the 8 HARPS-N échelle orders 121–114
(rows 36–43 of the pipeline's 69-row frames, 5026.2–5394.7 Å in air) on exactly the pixel
wavelengths of :func:`paper_lib.echelle.layout.order_wavelengths`, continuum-normalised by
:func:`paper_lib.echelle.continuum.normalise_orders`. This module brings a real observation onto that
same footing:

1. **Read** the file into a :class:`~paper_lib.observed.spectrum.Spectrum`
   (:mod:`~paper_lib.observed.read`, FITS details in :mod:`~paper_lib.observed.fits`, checks in
   :mod:`~paper_lib.observed.checks`) (wavelengths in air Å, flux, validity mask):

   * ``e2ds`` – HARPS-N / HARPS DRS 3.x order-by-order frames (69 or 72 × 4096). The
     wavelength of row r, pixel px = 0 … 4095 is λ = Σ_j c_j px^j with
     c_j = ``HIERARCH {TNG|ESO} DRS CAL TH COEFF LL{(deg+1)·r + j}``, deg =
     ``... CAL TH DEG LL``; or it comes from a separate ``_wave_A`` image. The flux is divided
     by the ``_blaze_A`` frame (given, or the file named in ``... DRS BLAZE FILE`` next to it).
     Wavelengths are in the observatory frame.
   * ``s2d`` – the newer (ESPRESSO-type) DRS products that DACE serves: ``SCIDATA`` with
     ``WAVEDATA_AIR_BARY`` and ``QUALDATA`` extensions, already blaze-corrected.
   * ``s1d`` – merged 1D spectra: a 1D image with a linear axis λ_i = CRVAL1 + CDELT1·(i + 1 −
     CRPIX1) (i from 0), or a binary table (:mod:`~paper_lib.observed.tables`): the newer DRS
     ``S1D`` (``wavelength_air`` or vacuum ``wavelength`` and ``flux``) and ESO Phase-3 spectra
     (``WAVE``, ``FLUX``, ``ERR``, ``QUAL``; one row of array cells or flat columns).
   * ``orders`` – échelle orders of any instrument (:mod:`~paper_lib.observed.orders`): a 2D
     flux image with a wavelength image of the same shape in another HDU or another file
     (``wave_path``), a blaze image optional.
   * ``text`` (:mod:`~paper_lib.observed.text`) – columns of numbers, gzipped or not: two
     columns of air Å and flux, or a header line naming the columns as iSpec and the Gaia
     benchmark library write them (``waveobs flux err``, nm).

   A 1D spectrum may sit in any HDU. Wavelength units come from the file (``TUNITn``,
   ``CUNIT1``, ``BUNIT``, a unit in a column's name, the ``waveobs`` convention) or else from the
   values, with a note (:mod:`~paper_lib.observed.units`, :class:`~paper_lib.observed.spectrum.
   SpectrumNote`); decreasing wavelengths are put in order.

   The reader records the instrument (``INSTRUME``, the DRS keyword family, or the number of
   e2ds rows), the frame of the wavelengths (e2ds: observatory; s1d: barycentric, or the
   table's ``SPECSYS``) and the BERV in ``Spectrum.meta``.

   **Clean** the pixels (:mod:`~paper_lib.observed.pixels`): the instrument's CCD gap is
   masked by wavelength whatever the file holds there, negative flux is refused, and short runs
   of NaN, inf, ≤ 0 or cosmic-ray pixels are repaired from their neighbours.

2. **Measure the radial velocity** by cross-correlation with a synthetic template (by default
   the one shipped in ``paper_lib/data``, :mod:`~paper_lib.observed.template`) over ±1000 km/s
   (:func:`~paper_lib.observed.velocity.measure_velocity`, with the CCF peak's significance)
   and move to the rest frame, λ_rest = λ_obs / (1 + v/c).

3. **Resample** onto the training pixels (Keys cubic interpolation in each order's own pixel
   coordinate — the same kernel :mod:`paper_lib.echelle.layout` uses for synthetic spectra), and
   **normalise** every order with :func:`paper_lib.echelle.continuum.normalise_orders`, ignoring
   pixels without data.

4. **Fill** the pixels without data with 1.0 (see :func:`~paper_lib.observed.model_input.to_model_input` for
   why) and report them in ``ModelInput.mask`` and ``ModelInput.gap_fraction``.

Masks in this module are True where a pixel holds valid data (the opposite of the ``mask``
argument of :func:`paper_lib.echelle.continuum.normalise_orders`, which marks pixels to ignore).

:mod:`~paper_lib.observed.quality` estimates the SNR of the result and how unlike the
synthetic training spectra it is (the out-of-distribution score behind ``predict``'s flags).

Every problem with a file raises :class:`~paper_lib.observed.spectrum.SpectrumFileError` naming
the file and the problem. :func:`~paper_lib.observed.dace.fetch_dace_sun` downloads public
HARPS-N solar-telescope spectra from DACE for users with a network connection and the optional
``dace-query`` package.
"""
