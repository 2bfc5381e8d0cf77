# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Data generation: a real synthetic grid, cut into HARPS-N échelle images
#
# Section 2.1 of Hüttel & Clemmensen (2021). The networks never see a real star while they
# learn: they learn from **synthetic spectra** computed with a radiative-transfer code from
# model atmospheres. Here we
#
# 1. compute normalised spectra with **Turbospectrum** from **Castelli–Kurucz ATLAS9 (ODFNEW)**
#    model atmospheres and the **Gaia-ESO** line list, for every (Teff, log g, [M/H]) node of
#    the paper's Table 1 that exists (5020–5400 Å, 0.01 Å; the `smoke` profile builds 14 nodes);
# 2. look at which nodes exist and at a few spectra around the Mg b triplet;
# 3. turn a spectrum into what the HARPS-N pipeline delivers: rotation (Gray's profile),
#    the instrument (R = 115 000), the **8 échelle orders × 4096 pixels** of the real HARPS-N
#    wavelength calibration, a linear slant per order, and Gaussian noise at a chosen SNR
#    (the paper's Figure 1);
# 4. fix the seeded test sets that notebook 05 evaluates on.
#
# Everything heavy lives in `paper_lib` (`synthetic` for the spectra and the grid, `echelle` for
# the images and the generator); this notebook narrates and calls it.

# %% tags=["parameters"]
profile = "smoke"  # smoke | cpu | paper (its seed drives every random draw)
workers = None  # synthesis processes (None: all cores)
figures_dir = None  # default: figures/<profile>/

# %%
import numpy as np

from paper_lib import experiments, plotting
from paper_lib.echelle.layout import order_wavelengths
from paper_lib.instrument import physical_order
from paper_lib.notebook import start
from paper_lib.synthetic.build import build_profile_grid, profile_nodes
from paper_lib.synthetic.grid import Grid

nb = start("01_data_generation", profile, figures_dir=figures_dir)
P, figures = nb.profile, nb.figures

# %% [markdown]
# ## 1 · The grid
#
# `build_profile_grid` synthesises every node the profile needs, in parallel, skipping nodes
# already on disk (an interrupted build resumes), and writes one FITS file plus a manifest
# (inputs with checksums, code versions, per-node wall time, absent nodes). Each node is
# synthesised at its own microturbulence (Tsantaki et al. 2013 for dwarfs, Adibekyan et al. 2015
# for giants), with the Gaia-ESO atoms, the VALD3 lines they lack and ExoMol MgH; what a node is
# made of is one record, `physics()`, whose hash `physics_id()` names the grid and its node
# cache, so a grid of other physics is never reused. The full grid takes 90–120 minutes on 2
# cores; set `PAPER_LIB_GRID` to reuse an existing full grid of the same physics.

# %%
grid_file = build_profile_grid(P, workers=workers)
grid = Grid.from_fits(grid_file)
present, absent = profile_nodes(P.grid_nodes)

# %%
# NBVAL_CHECK_OUTPUT
print(f"grid: {len(grid.labels)} nodes × {grid.wavelength.size} wavelengths "
      f"({grid.wavelength[0]:.2f}–{grid.wavelength[-1]:.2f} Å, step "
      f"{grid.wavelength[1] - grid.wavelength[0]:.2f} Å)")
print(f"nodes of this profile absent from the ATLAS9 grid: {len(absent)}")
print(f"grid cells with all 8 corners present: {int(grid.valid_cells().sum())}")

# %% [markdown]
# Which Table-1 nodes exist. The full grid lacks 231 nodes in the hot, low-gravity corner:
# Castelli & Kurucz computed no models there (those stars would exceed the Eddington limit),
# so labels are only sampled where all 8 surrounding nodes exist.

# %%
plotting.plot_grid_coverage(grid, figures / "grid_coverage.png");

# %% [markdown]
# A few stars across the grid around the Mg b triplet (5160–5190 Å): lines deepen towards
# cool, metal-rich stars and the wings of Mg b broaden with gravity.

# %%
showcase = [(4000.0, 1.0, -2.0), (5500.0, 4.0, -0.5), (5750.0, 4.5, 0.0), (9500.0, 4.0, 0.0),
            (3500.0, 4.5, 0.0), (5000.0, 2.5, -1.0), (7000.0, 4.0, 0.0)]
showcase = [n for n in showcase if grid.has_node(*n)]
plotting.plot_spectra_window(grid.wavelength, [grid.node_flux(*n) for n in showcase], showcase,
                             window=(5160.0, 5190.0), path=figures / "mgb_spectra.png");

# %% [markdown]
# ## 2 · From a 1D spectrum to the HARPS-N image (the paper's Figure 1)
#
# The 8 orders are HARPS-N orders 121–114 (rows 36–43 of the pipeline's 69-row frames); their
# pixel wavelengths come from a real HARPS-N wavelength calibration stored in the package.

# %%
order_wave = order_wavelengths()
# NBVAL_CHECK_OUTPUT
for row, (w0, w1) in enumerate(zip(order_wave[:, 0], order_wave[:, -1])):
    print(f"order {physical_order(row)}: {w0:8.2f} – {w1:8.2f} Å, {(w1 - w0) / 4095:.4f} Å/px")

# %%
sun_like = np.array([[5750.0, 4.5, 0.0, 2.0]])
clean_1d = grid.node_flux(5750.0, 4.5, 0.0)
image_clean = experiments.observe_star(grid, sun_like, snr=None, slant_max=P.slant_max, seed=P.seed)[0]
plotting.plot_figure1(grid.wavelength, clean_1d, image_clean, order_wave,
                      path=figures / "figure1_sun_like.png",
                      title="Teff 5750 K, log g 4.5, [M/H] 0, v sin i 2 km/s");

# %% [markdown]
# The same star at SNR 20, 100 and 200 (noise σ = continuum / SNR per pixel, see
# `paper_lib.echelle.generator`), and the same star rotating at v sin i = 0, 10 and 30 km/s, around Mg b.

# %%
noisy = [experiments.observe_star(grid, sun_like, snr=snr, seed=P.seed)[0] for snr in (20, 100, 200)]
plotting.plot_image_rows(order_wave, noisy, ["SNR 20", "SNR 100", "SNR 200"],
                         window=(5165.0, 5187.0), path=figures / "snr_panel.png");

# %%
rotating = [experiments.observe_star(grid, [[5750.0, 4.5, 0.0, v]], snr=None, slant_max=0.0)[0]
            for v in (0.0, 10.0, 30.0)]
plotting.plot_image_rows(order_wave, rotating, ["v sin i 0", "v sin i 10", "v sin i 30 km/s"],
                         window=(5165.0, 5187.0), path=figures / "vsini_panel.png");

# %% [markdown]
# ## 3 · The generator and the fixed test sets
#
# While training, labels are drawn continuously (Teff, log g, [M/H] by trilinear interpolation
# between the 8 surrounding nodes; v sin i uniform in 0–30 km/s) and fresh noise is added at
# every step. The test sets are fixed and seeded (5667 spectra in the paper) and cached once.
# The measured SNR on the continuum checks the noise model. The `cpu` and `paper` profiles run
# the training generator through `torch.compile` (fused C++ loops: 1.5–1.7× more spectra per
# second, after a one-off compilation of ≈ 25 s; `compile_generator` in `paper_lib/profiles.py`);
# test sets are always generated without it, so they are reproducible bit for bit.

# %%
generator = experiments.training_source(grid, P)
batch = generator.sample(8, np.random.default_rng(P.seed))
measured_snr = experiments.measured_snr(batch)
test_sets = {}
for name, limited in (("main", False), ("limited", True)):
    test = experiments.test_batch(grid, P, limited=limited)
    test_sets[name] = {"n": int(test.labels.shape[0]), **experiments.data_settings(P, limited=limited)}
# NBVAL_CHECK_OUTPUT
print("batch:", tuple(batch.noisy.shape), batch.noisy.dtype, "labels:", tuple(batch.labels.shape))
print(f"requested SNR {P.snr_train:g}, measured within 5 %: "
      f"{abs(measured_snr / P.snr_train - 1) < 0.05}")
print({k: v["n"] for k, v in test_sets.items()})

# %%
nb.write_results({
    "grid_file": str(grid_file), "n_nodes": int(len(grid.labels)),
    "n_absent_nodes": len(absent), "n_valid_cells": int(grid.valid_cells().sum()),
    "wavelength_A": [float(grid.wavelength[0]), float(grid.wavelength[-1])],
    "measured_snr": float(measured_snr), "requested_snr": P.snr_train,
    "test_sets": test_sets,
})
