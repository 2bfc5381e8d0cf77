# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · The attention network
#
# Section 3.2 of the paper, after Jetley et al. (2018) and Oktay et al. (2018): a trunk of 11
# convolutional layers (1×7 kernels, zero padding); three attention blocks, each fed by an
# intermediate feature map xₙ and the global feature map g, compute a softmax attention map
# αₙ (Eq. 3) that weights xₙ; each block has its own Gaussian head and the heads are averaged.
# 2×2 max pooling follows each block. Same variants and training as notebook 03; notebook 07
# shows the attention maps.

# %% tags=["parameters"]
profile = "smoke"  # smoke | cpu | paper (its seed drives every random draw)
figures_dir = None  # default: figures/<profile>/
models_dir = None  # default: models/<profile>/

# %%
from paper_lib import experiments, plotting
from paper_lib.notebook import start
from paper_lib.synthetic.grid import load_grid

nb = start("04_train_attention", profile, figures_dir=figures_dir, models_dir=models_dir)
P = nb.profile
grid = load_grid(P)
variants = experiments.variants_for(P, "attention")
# NBVAL_CHECK_OUTPUT
print(variants)

# %% [markdown]
# Training resumes from the checkpoints in `models/<profile>/` (or just loads finished ones).

# %%
results = experiments.train_variants(variants, P, grid, nb.models)

# %%
plotting.plot_loss_curves({v: experiments.history_dict(r.history) for v, r in results.items()},
                          path=nb.figures / "loss_attention.png", title="attention: training NLL");

# %%
summary = experiments.summarise(results)
nb.write_results(summary)
summary
