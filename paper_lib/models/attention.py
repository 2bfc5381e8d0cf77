"""Attention network (paper §3.2, Eq. 3), after Jetley et al. 2018 and Oktay et al. 2018.

A trunk of 11 conv1x7 · BN · ReLU layers (zero padding, kernels within one échelle order) taps
three intermediate feature maps x_1, x_2, x_3 and ends in the global feature map g::

    input (B, 1, 8, P)      P = 4096 / stem_stride
    stage 0: 3 layers, w    → (w,  8, P)
    stage 1: 2 layers, 2w   → x_1 (2w, 8, P)    → attention block 1, then 2×2 max pool
    stage 2: 2 layers, 4w   → x_2 (4w, 4, P/2)  → attention block 2, then 2×2 max pool
    stage 3: 2 layers, 4w   → x_3 (4w, 2, P/4)  → attention block 3, then 2×2 max pool
    stage 4: 2 layers, 4w   → g   (4w, 1, P/8)

Attention block n (Eq. 3): ``q = ψ(ReLU(W_x x_n + W_g g↑ + b_xg)) + b_ψ`` with 1×1 convolutions
W_x, W_g to F_int = ``inter_channels`` channels (g projected, then bilinearly resized to x_n's
grid), ψ to one channel; ``α_n = softmax(q)`` over all positions of x_n, so α_n sums to one per
spectrum; the block's output is the attention-weighted sum ``Σ_positions α_n · x_n`` (B, F_x).

Each block has its own Gaussian head. Aggregation (paper: "we average the outputs of the
attention blocks"): the means are averaged, the covariances Σ_n = L_n L_nᵀ are averaged and the
average is re-factorised by a Cholesky decomposition (float64, exact for diagonal heads). The
model is trained on the averaged Gaussian, so its covariance is calibrated for the averaged
mean; the spread between the heads' means is deliberately not added.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paper_lib.instrument import N_ORDERS, N_PIXELS, check_spectra
from paper_lib.models.gaussian import GaussianHead, GaussianOutput
from paper_lib.models.resnet import conv_bn_relu

STAGE_LAYERS = (3, 2, 2, 2, 2)  # 11 conv layers in all
STAGE_WIDTHS = (1, 2, 4, 4, 4)  # multiples of `width`
TAPPED_STAGES = (1, 2, 3)  # stages whose output feeds an attention block
CHOLESKY_JITTER = 1e-12  # added to averaged covariances (variances are ≥ 1e-6, the σ floor squared)


# helpers


def make_stage(in_channels: int, out_channels: int, n_layers: int, stride: int = 1) -> nn.Sequential:
    """``n_layers`` conv1x7 · BN · ReLU layers; the first has pixel stride ``stride``."""
    layers = [conv_bn_relu(in_channels, out_channels, stride)]
    layers += [conv_bn_relu(out_channels, out_channels) for _ in range(n_layers - 1)]
    return nn.Sequential(*layers)


def average_gaussians(outputs: list[GaussianOutput], *, diagonal: bool) -> GaussianOutput:
    """Average K Gaussians: mean of the means, Cholesky factor of the mean covariance.

    outputs: K × (mean (B, D), scale_tril (B, D, D)). ``diagonal=True`` keeps the factor
    diagonal (σ = sqrt of the averaged variances); otherwise the averaged covariance (positive
    definite as an average of positive definite matrices) is factorised in float64, after
    adding ``CHOLESKY_JITTER`` to its diagonal against round-off in extremely elongated ones.
    """
    mean = torch.stack([o.mean for o in outputs]).mean(dim=0)
    if diagonal:
        variance = torch.stack([o.sigma.square() for o in outputs]).mean(dim=0)
        return GaussianOutput(mean, torch.diag_embed(variance.sqrt()))
    trils = torch.stack([o.scale_tril for o in outputs]).double()
    covariance = (trils @ trils.transpose(-1, -2)).mean(dim=0)
    covariance = covariance + CHOLESKY_JITTER * torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device)
    scale_tril = torch.linalg.cholesky(covariance).to(mean.dtype)
    return GaussianOutput(mean, scale_tril)


def upsample_attention(alpha: Tensor) -> Tensor:
    """Attention map (B, h, w) → (B, 8, 4096) on the input grid (bilinear), renormalised to sum 1."""
    up = F.interpolate(alpha.unsqueeze(1), size=(N_ORDERS, N_PIXELS), mode="bilinear", align_corners=False)
    up = up.squeeze(1)
    return up / up.sum(dim=(1, 2), keepdim=True)


# classes


class AttentionBlock(nn.Module):
    """Grid attention gate with a softmax over positions (Eq. 3).

    x: (B, F_x, h, w) intermediate map, g: (B, F_g, h_g, w_g) global map →
    (alpha (B, h, w) summing to one per sample, pooled (B, F_x) = Σ α·x).
    """

    def __init__(self, *, x_channels: int, g_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.W_x = nn.Conv2d(x_channels, inter_channels, kernel_size=1, bias=False)
        self.W_g = nn.Conv2d(g_channels, inter_channels, kernel_size=1, bias=True)  # bias = b_xg
        self.psi = nn.Conv2d(inter_channels, 1, kernel_size=1, bias=True)  # bias = b_ψ

    def forward(self, x: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        g_int = F.interpolate(self.W_g(g), size=x.shape[-2:], mode="bilinear", align_corners=False)
        q = self.psi(F.relu(self.W_x(x) + g_int)).flatten(1)  # (B, h·w)
        alpha = torch.softmax(q.float(), dim=1).to(x.dtype)
        pooled = torch.einsum("bp,bcp->bc", alpha, x.flatten(2))
        return alpha.view(x.shape[0], *x.shape[-2:]), pooled


class AttentionNet(nn.Module):
    """Attention network: spectra (B, 8, 4096) → :class:`GaussianOutput` (B, 4).

    width: channels of the first trunk stage (stages use w, 2w, 4w, 4w, 4w).
    inter_channels: F_int, channels inside the attention blocks.
    stem_stride: pixel stride of the first convolution (1 = full resolution, as in the paper).
    head_hidden: hidden units of a ReLU layer before each Gaussian head (0: linear heads).
    covariance: "diagonal" or "full".
    """

    def __init__(
        self,
        *,
        width: int = 32,
        inter_channels: int = 32,
        stem_stride: int = 1,
        head_hidden: int = 64,
        covariance: str = "diagonal",
    ) -> None:
        super().__init__()
        widths = [m * width for m in STAGE_WIDTHS]
        in_widths = [1, *widths[:-1]]
        self.stages = nn.ModuleList(
            make_stage(c_in, c_out, n, stride=stem_stride if i == 0 else 1)
            for i, (c_in, c_out, n) in enumerate(zip(in_widths, widths, STAGE_LAYERS))
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        g_channels = widths[-1]
        self.blocks = nn.ModuleList(
            AttentionBlock(x_channels=widths[s], g_channels=g_channels, inter_channels=inter_channels)
            for s in TAPPED_STAGES
        )
        self.heads = nn.ModuleList(self._make_head(widths[s], head_hidden, covariance) for s in TAPPED_STAGES)
        self.covariance = covariance
        self.arch = {
            "kind": "attention",
            "covariance": covariance,
            "kwargs": {"width": width, "inter_channels": inter_channels, "stem_stride": stem_stride,
                       "head_hidden": head_hidden},
        }
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 7):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.to(memory_format=torch.channels_last)  # oneDNN/cuDNN run 1×7 convs faster (1.3–2× on CPU)

    @staticmethod
    def _make_head(in_features: int, hidden: int, covariance: str) -> nn.Module:
        if hidden <= 0:
            return GaussianHead(in_features=in_features, covariance=covariance)
        return nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
            GaussianHead(in_features=hidden, covariance=covariance),
        )

    def trunk(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Spectra (B, 8, 4096) → ([x_1, x_2, x_3], g) feature maps, shapes as in the module doc."""
        h = check_spectra(x).unsqueeze(1) - 1.0  # centred on the continuum (bfloat16 precision, see resnet.py)
        tapped = []
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if i in TAPPED_STAGES:
                tapped.append(h)
                h = self.pool(h)
        return tapped, h

    def attend(self, x: Tensor) -> tuple[list[Tensor], list[GaussianOutput]]:
        """Spectra → (3 attention maps (B, h_n, w_n), 3 per-block Gaussians)."""
        tapped, g = self.trunk(x)
        alphas, outputs = [], []
        for x_n, block, head in zip(tapped, self.blocks, self.heads):
            alpha, pooled = block(x_n, g)
            alphas.append(alpha)
            outputs.append(head(pooled))
        return alphas, outputs

    def forward(self, x: Tensor, return_attention: bool = False):
        """Spectra (B, 8, 4096) → averaged GaussianOutput (mean (B, 4), scale_tril (B, 4, 4));
        with ``return_attention=True`` also the 3 raw attention maps (B, 8, P), (B, 4, P/2), (B, 2, P/4)."""
        alphas, outputs = self.attend(x)
        out = average_gaussians(outputs, diagonal=self.covariance == "diagonal")
        return (out, alphas) if return_attention else out

    @torch.no_grad()
    def attention_maps(self, x: Tensor) -> list[Tensor]:
        """The 3 attention maps α_1..α_3 upsampled to the input grid: 3 × (B, 8, 4096), each
        summing to one per spectrum (paper Fig. 5)."""
        alphas, _ = self.attend(x)
        return [upsample_attention(alpha.float()) for alpha in alphas]


if __name__ == "__main__":
    model = AttentionNet(width=8, inter_channels=8, stem_stride=4, covariance="full")
    spectra = 1.0 - 0.5 * torch.rand(2, N_ORDERS, N_PIXELS)
    out, alphas = model(spectra, return_attention=True)
    print("input", tuple(spectra.shape))
    print("mean", tuple(out.mean.shape), "scale_tril", tuple(out.scale_tril.shape))
    print("attention maps", [tuple(a.shape) for a in alphas], "→", [tuple(a.shape) for a in model.attention_maps(spectra)])
    print("parameters", sum(p.numel() for p in model.parameters()))
