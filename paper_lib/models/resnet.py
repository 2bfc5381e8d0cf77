"""Residual network with a Gaussian head (paper §3.2: 5 residual blocks, 3 fully connected layers).

The (B, 8, 4096) échelle image is treated as a 1-channel image (B, 1, 8, 4096). All kernels are
1×7 with zero padding (0, 3), so a convolution never mixes two échelle orders; strides act on
the pixel axis only. Layout (torchvision style)::

    stem     conv1x7(1→w, stride (1, stem_stride)) · BN · ReLU
    layer1–5 BasicBlock, widths (w, 2w, 2w, 4w, 4w), pixel strides (1, 2, 2, 2, 2)
    pool     adaptive average pool to (8, pooled_pixels)
    fc       flatten → Linear·ReLU·Dropout → Linear·ReLU·Dropout → GaussianHead (3rd FC layer)

``stem_stride`` > 1 subsamples the pixel axis once at the input (cheaper, for CPU runs); the
paper profile uses 1 (full resolution). The flux enters as x − 1 (centred on the continuum):
a plain shift in float32, but under bfloat16 autocast it keeps the line depths exact to ~0.4 %
instead of rounding the flux near 1 to steps of 0.008 (larger than the noise at SNR 100).

``hidden_runs`` ((order, first, stop) pixel runs, stop exclusive) are pixels the network never
sees: they are set to the continuum (1.0) before the stem, in training and in every use — a
line mask (:mod:`paper_lib.evaluation.line_mask`) that travels with the weights, because it is
part of the architecture record.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from paper_lib.instrument import N_ORDERS, N_PIXELS, check_spectra
from paper_lib.models.gaussian import GaussianHead, GaussianOutput

BLOCK_WIDTHS = (1, 2, 2, 4, 4)  # multiples of `width`
BLOCK_STRIDES = (1, 2, 2, 2, 2)  # along the pixel axis


# helpers


def hidden_pixels(runs) -> Tensor:
    """Boolean (8, 4096): True on the pixels of ``runs`` ((order, first, stop), stop exclusive);
    ValueError for runs outside the image."""
    hidden = torch.zeros(N_ORDERS, N_PIXELS, dtype=torch.bool)
    for order, first, stop in runs:
        if not (0 <= order < N_ORDERS and 0 <= first < stop <= N_PIXELS):
            raise ValueError(f"hidden run ({order}, {first}, {stop}) lies outside the "
                             f"{N_ORDERS}×{N_PIXELS} image")
        hidden[order, first:stop] = True
    return hidden


def conv1x7(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1×7 convolution along the pixel axis, zero padding (0, 3), pixel stride ``stride``, no bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=(1, 7), stride=(1, stride), padding=(0, 3), bias=False)


class PixelSubsample(nn.Module):
    """Keep every ``stride``-th pixel: (B, C, H, W) → (B, C, H, ceil(W / stride))."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return x[..., :: self.stride]


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    """1×1 convolution (channel mixing) with pixel stride ``stride``, no bias.

    A strided 1×1 convolution only reads every ``stride``-th pixel, so it is written as that
    subsampling followed by an unstrided 1×1 convolution (same result, same parameters): torch
    2.13's oneDNN backward of a strided 1×1 convolution in channels-last layout corrupts the
    heap for 8 or 12 input channels.
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
    return conv if stride == 1 else nn.Sequential(PixelSubsample(stride), conv)


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """conv1x7 · BatchNorm · ReLU, the plain layer shared by the attention trunk."""
    return nn.Sequential(conv1x7(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


# classes


class BasicBlock(nn.Module):
    """Two conv1x7 · BN layers with an identity shortcut (a 1×1 conv · BN only when the
    stride or width changes). (B, C_in, H, W) → (B, C_out, H, ceil(W / stride))."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv1x7(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv1x7(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Heteroscedastic residual network: spectra (B, 8, 4096) → :class:`GaussianOutput` (B, 4).

    width: channels of the stem and first block (blocks use w, 2w, 2w, 4w, 4w).
    fc_hidden: widths of the two hidden fully connected layers (the head is the third).
    dropout: dropout probability after each hidden FC layer (paper: dropout in the FC layers).
    stem_stride: pixel stride of the stem convolution (1 = full resolution, as in the paper).
    pooled_pixels: pixels per order kept by the adaptive average pool before the FC layers.
    covariance: "diagonal" or "full" (see :class:`paper_lib.models.gaussian.GaussianHead`).
    hidden_runs: pixels never seen, ((order, first, stop), …), set to 1.0 (see the module doc).
    """

    def __init__(
        self,
        *,
        width: int = 32,
        fc_hidden: tuple[int, int] = (512, 128),
        dropout: float = 0.2,
        stem_stride: int = 1,
        pooled_pixels: int = 32,
        covariance: str = "diagonal",
        hidden_runs=(),
    ) -> None:
        super().__init__()
        if len(fc_hidden) != 2:
            raise ValueError(f"fc_hidden must hold 2 widths (3 FC layers with the head), got {fc_hidden!r}")
        runs = [[int(v) for v in run] for run in hidden_runs]
        self.register_buffer("hidden", hidden_pixels(runs), persistent=False)
        self.stem = conv_bn_relu(1, width, stem_stride)
        self.layers = self._make_layers(width)
        self.pool = nn.AdaptiveAvgPool2d((N_ORDERS, pooled_pixels))
        features = BLOCK_WIDTHS[-1] * width * N_ORDERS * pooled_pixels
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(features, fc_hidden[0]),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_hidden[0], fc_hidden[1]),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.head = GaussianHead(in_features=fc_hidden[1], covariance=covariance)
        self.arch = {
            "kind": "resnet",
            "covariance": covariance,
            "kwargs": {"width": width, "fc_hidden": list(fc_hidden), "dropout": dropout,
                       "stem_stride": stem_stride, "pooled_pixels": pooled_pixels},
        }
        if runs:  # only when there is a mask: unmasked records stay as they were
            self.arch["kwargs"]["hidden_runs"] = runs
        self._init_weights()
        self.to(memory_format=torch.channels_last)  # oneDNN/cuDNN run 1×7 convs faster (1.3–2× on CPU)

    @staticmethod
    def _make_layers(width: int) -> nn.Sequential:
        blocks, in_channels = [], width
        for multiple, stride in zip(BLOCK_WIDTHS, BLOCK_STRIDES):
            blocks.append(BasicBlock(in_channels=in_channels, out_channels=multiple * width, stride=stride))
            in_channels = multiple * width
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: Tensor) -> Tensor:
        """Spectra (B, 8, 4096) → last block's feature map (B, 4w, 8, P) with P = 4096/(16·stem_stride)."""
        x = check_spectra(x)
        if self.arch["kwargs"].get("hidden_runs"):
            x = torch.where(self.hidden, torch.ones((), dtype=x.dtype, device=x.device), x)
        x = x.unsqueeze(1) - 1.0  # centred on the continuum, see the module doc
        return self.layers(self.stem(x))

    def forward(self, x: Tensor) -> GaussianOutput:
        """Spectra (B, 8, 4096) → mean (B, 4), scale_tril (B, 4, 4) in scaled-label units."""
        return self.head(self.fc(self.pool(self.features(x))))


if __name__ == "__main__":
    model = ResNet(width=8, fc_hidden=(64, 32), stem_stride=4, covariance="full")
    spectra = 1.0 - 0.5 * torch.rand(2, N_ORDERS, N_PIXELS)
    out = model(spectra)
    print("input", tuple(spectra.shape), "features", tuple(model.features(spectra).shape))
    print("mean", tuple(out.mean.shape), "scale_tril", tuple(out.scale_tril.shape), "sigma", tuple(out.sigma.shape))
    print("parameters", sum(p.numel() for p in model.parameters()))
