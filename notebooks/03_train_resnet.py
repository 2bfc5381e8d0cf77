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
# # 03 · The residual network
#
# Sections 3.1 and 4 of the paper: a residual network (5 residual blocks of 1×7 convolutions
# with zero padding, 3 fully connected layers with dropout) predicts a Gaussian over the four
# labels — mean and either a **diagonal** or a **full** covariance (Cholesky factor) — trained
# by the negative log-likelihood of Eq. 2 with Adam (lr 10⁻⁴, × 0.1 at the end).
#
# Variants, as in Table 2: diagonal/full × without/with the DAE of notebook 02 at SNR 20, and
# the † variant trained at SNR 100 on the limited range 4000–6000 K. A "_dae" variant starts
# from the trained regressor and is fine-tuned behind the frozen DAE. The `cpu` profile trains
# with a warm-up + cosine learning rate and lets the full-covariance and † variants start from
# the trained diagonal network too (`init_from_base`), and without dropout (in 5000 steps its
# small networks still underfit, and dropout only slowed them: README, Profiles); the `paper`
# profile keeps the paper's schedule and dropout and trains every variant from scratch.
#
# One more variant is not in the paper: **`resnet_diagonal_real`**, the network made for real
# spectra and the default of `predict`. It continues from
# `resnet_diagonal` on images with what real HARPS(-N) spectra have and the paper's lack:
# SNR 20–300, the HARPS CCD gap masked and filled with 1.0 in half of them, a few hundred m/s
# of residual radial velocity, continuum curvature, and lines whose strengths differ from the
# synthesis's by 0.1 dex of log gf each, as real lines do (`paper_lib/echelle/realism.py`). It
# trains without dropout, so that its σ describe the network as it is used (with dropout the
# σ head learns the larger error of the thinned network: the paper's §4.1 overestimate).

# %% tags=["parameters"]
profile = "smoke"  # smoke | cpu | paper (its seed drives every random draw)
figures_dir = None  # default: figures/<profile>/
models_dir = None  # default: models/<profile>/

# %%
from paper_lib import experiments, plotting
from paper_lib.notebook import start
from paper_lib.synthetic.grid import load_grid

nb = start("03_train_resnet", profile, figures_dir=figures_dir, models_dir=models_dir)
P = nb.profile
grid = load_grid(P)
variants = experiments.variants_for(P, "resnet")
# NBVAL_CHECK_OUTPUT
print(variants)

# %% [markdown]
# Training resumes from the checkpoints in `models/<profile>/` (or just loads finished ones).

# %%
results = experiments.train_variants(variants, P, grid, nb.models)

# %% [markdown]
# `resnet_diagonal_real` never sees a **line mask**: the pixels where our synthesis misses the
# Sun and Arcturus at their reference labels by more than 0.05
# (`models/cpu/line_mask.json`, made by `python -m paper_lib line-mask` from the shipped
# spectrum emulator; notebook 09 and the Benchmark stars page say why). Those two stars are
# its calibrators, so it is trained twice more, each time blind to the mask made **without**
# one of them: the networks that read the Sun and Arcturus in notebook 09
# (`models/<profile>/line_mask_folds/`).

# %%
folds = experiments.train_line_mask_folds(P, grid, nb.models)

# %%
# NBVAL_CHECK_OUTPUT
print(sorted(folds))

# %%
plotting.plot_loss_curves({v: experiments.history_dict(r.history) for v, r in results.items()},
                          path=nb.figures / "loss_resnet.png", title="resnet: training NLL");

# %%
summary = experiments.summarise(results)
nb.write_results(summary)
summary
