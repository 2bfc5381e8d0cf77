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
# # 07 · Where does the attention network look? (Figure 5)
#
# Section 4.3 of the paper. Each attention block computes a map α over the positions of its
# feature map, softmax-normalised to sum to one (Eq. 3). Upsampled to the 8 × 4096 input, they
# show which parts of the échelle image the network weighs. The paper reports strong
# attention at the Mg b lines (5167.3, 5172.7, 5183.6 Å); we mark those and a few strong Fe I
# lines at their pixel positions, and measure how much attention falls within ±0.5 Å of them
# compared with a uniform map. The upsampling after pooling spreads attention over
# neighbouring rows, which is why some lands between orders.

# %% tags=["parameters"]
profile = "smoke"  # smoke | cpu | paper (its seed drives every random draw)
variant = "attention_diagonal"
figures_dir = None  # default: figures/<profile>/
models_dir = None  # default: models/<profile>/

# %%
import torch

from paper_lib import experiments, plotting
from paper_lib.echelle.layout import order_wavelengths
from paper_lib.notebook import start
from paper_lib.synthetic.grid import load_grid

nb = start("07_attention_maps", profile, figures_dir=figures_dir, models_dir=models_dir)
P, figures = nb.profile, nb.figures
grid = load_grid(P)
model = experiments.load_variant(P, variant, nb.models)
order_wave = order_wavelengths()

# %% [markdown]
# A Sun-like star (5750 K, log g 4.5, solar metallicity, v sin i 2 km/s) at the training SNR.

# %%
image = experiments.observe_star(grid, [[5750.0, 4.5, 0.0, 2.0]], snr=P.snr_train,
                                 slant_max=P.slant_max, seed=P.seed)
maps = [m[0].numpy() for m in model.attention_maps(torch.as_tensor(image))]
plotting.plot_attention_maps(image[0], maps, order_wave, path=figures / "fig5_attention.png",
                             title=f"{variant} ({P.name} profile)");

# %% [markdown]
# Attention near the Mg b triplet and near the strong Fe I lines, relative to a uniform map,
# averaged over 64 test spectra.

# %%
test = experiments.test_batch(grid, P)
with torch.no_grad():
    test_maps = model.attention_maps(test.noisy[:64])
mean_maps = [m.mean(0).numpy() for m in test_maps]
mgb = plotting.attention_near_lines(mean_maps, order_wave, plotting.MG_B)
fe = plotting.attention_near_lines(mean_maps, order_wave, plotting.FE_LINES)
for i, (a, b) in enumerate(zip(mgb, fe)):
    print(f"α{i + 1}: Mg b ×{a['enhancement']:.2f} of uniform, Fe I ×{b['enhancement']:.2f}")
# NBVAL_CHECK_OUTPUT
print([tuple(m.shape) for m in test_maps])

# %%
nb.write_results({
    "variant": variant, "mgb_attention": mgb, "fe_attention": fe,
    "map_sums": [float(m.sum()) for m in maps],
})
