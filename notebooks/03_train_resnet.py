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
# # 03 · The residual network
#
# Sections 3.1 and 4 of the paper: a residual network (5 residual blocks of 1×7 convolutions
# with zero padding, 3 fully connected layers with dropout) predicts a Gaussian over the four
# labels — mean and either a **diagonal** or a **full** covariance (Cholesky factor) — trained
# by the negative log-likelihood of Eq. 2 with Adam (lr 10⁻⁴, × 0.1 at the end).
#
# Variants, as in Table 2: diagonal/full × without/with the DAE of notebook 02 at SNR 20, and
# the † variant trained at SNR 100 on the limited range 4000–6000 K. A "_dae" variant starts
# from the trained regressor and is fine-tuned behind the frozen DAE.

# %% tags=["parameters"]
profile = "smoke"  # smoke | cpu | paper
seed = 2021
network = "resnet"
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
write_results(P.name, f"03_train_{network}", summary, seed=seed, started=started)
summary
