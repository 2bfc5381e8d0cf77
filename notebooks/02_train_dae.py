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
# # 02 · The denoising auto-encoder
#
# Section 3.3 of the paper. At SNR ≈ 20 the absorption lines are buried in noise; a
# convolutional **denoising auto-encoder** (DAE) learns to map a noisy échelle image x′ back to
# the clean one x by minimising ‖x − g(f(x′))‖² (Eq. 4). Pairs (noisy, clean) come from the
# on-the-fly generator of notebook 01 with fresh noise at every step. Notebooks 03 and 04 put
# the trained DAE, frozen, in front of the regressors (the "DAE" rows of Table 2).
#
# The paper trains the DAE for 1500 epochs with AdamW (lr 3·10⁻⁴, × 0.1 for the last 50
# epochs); the `cpu` and `smoke` profiles scale the number of epochs down (see
# `paper_lib/profiles.py`).

# %% tags=["parameters"]
profile = "smoke"  # smoke | cpu | paper (its seed drives every random draw)
figures_dir = None  # default: figures/<profile>/
models_dir = None  # default: models/<profile>/

# %%
import numpy as np
import torch

from paper_lib import experiments, paths, plotting
from paper_lib.echelle.layout import order_wavelengths
from paper_lib.notebook import start
from paper_lib.synthetic.grid import load_grid

nb = start("02_train_dae", profile, figures_dir=figures_dir, models_dir=models_dir)
P, figures = nb.profile, nb.figures
grid = load_grid(P)

# %% [markdown]
# ## Training
# Checkpoints are written every epoch; rerunning the notebook resumes where it stopped (or
# just loads the finished model). Notebooks 03 and 04 train the regressors the same way.

# %%
result = experiments.train_variants(["dae"], P, grid, nb.models)["dae"]
dae = result.model
val_batch = experiments.validation_batch(grid, P)

# %%
plotting.plot_loss_curves({"DAE": experiments.history_dict(result.history)},
                          path=figures / "loss_dae.png", title="DAE: reconstruction loss");

# %% [markdown]
# ## What the DAE does to one validation spectrum
# The root-mean-square deviation from the clean image before and after denoising, over the
# whole validation set, measures how much noise it removes.

# %%
with torch.no_grad():
    denoised = dae(val_batch.noisy).numpy()
noisy, clean = val_batch.noisy.numpy(), val_batch.clean.numpy()
rms_noisy = float(np.sqrt(np.mean((noisy - clean) ** 2)))
rms_denoised = float(np.sqrt(np.mean((denoised - clean) ** 2)))
plotting.plot_image_rows(
    order_wavelengths(), [noisy[0], denoised[0], clean[0]],
    ["noisy input", "DAE output", "clean target"], window=(5165.0, 5187.0),
    path=figures / "dae_example.png");
print(f"RMS deviation from the clean image: noisy {rms_noisy:.4f}, denoised {rms_denoised:.4f}")

# %%
nb.write_results({
    "checkpoint": str(result.checkpoint.relative_to(paths.root)),
    "epochs": len(result.history), "final_val_loss": result.history[-1]["val_loss"],
    "rms_noisy": rms_noisy, "rms_denoised": rms_denoised,
    "train_wall_time_s": float(sum(h["train_seconds"] for h in result.history)),
})
