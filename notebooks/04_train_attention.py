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
profile = "smoke"  # smoke | cpu | paper
seed = 2021
network = "attention"
figures_dir = None  # default: figures/<profile>/
models_dir = None  # default: models/<profile>/

# %%
import time

started = time.time()
from pathlib import Path

from paper_lib import experiments, paths, plotting
from paper_lib.grid import load_grid
from paper_lib.profiles import get_profile
from paper_lib.provenance import write_results

P = get_profile(profile)
figures = Path(figures_dir) if figures_dir else paths.figures / P.name
models = Path(models_dir) if models_dir else paths.models / P.name
grid = load_grid(P)
variants = experiments.variants_for(P, network)
# NBVAL_CHECK_OUTPUT
print(variants)

# %%
results = experiments.train_variants(variants, P, grid, models)

# %%
plotting.plot_loss_curves({v: experiments.history_dict(r.history) for v, r in results.items()},
                          path=figures / f"loss_{network}.png", title=f"{network}: training NLL");

# %%
summary = experiments.summarise(results)
write_results(P.name, f"04_train_{network}", summary, seed=seed, started=started)
summary
