"""A spectrum emulator (The Payne's way, Ting et al. 2019): labels → the grid's normalised flux.

(Teff [K], log g [dex], [M/H] [dex]) → the normalised flux at v sin i = 0 on the grid's own
wavelengths (air Å, 0.01 Å), as ``mean + coefficients @ basis``: ``basis`` holds the leading
principal components of the training nodes' spectra (orthonormal rows), a small MLP gives the
coefficients. Everything after the flux (rotation, macroturbulence, instrument, échelle
pixels) stays the existing forward model, which is linear in the flux, so a fit renders an
emulated star as cheaply as an interpolated one (:mod:`paper_lib.predict.fit`).

Trained by :mod:`paper_lib.training.emulator` (``python -m paper_lib emulator``); stored as
``models/<profile>/emulator.pt`` with the basis in float16. Shape demo:
``python paper_lib/models/emulator.py``.
"""

from __future__ import annotations

import torch
from torch import nn

THETA_KELVIN = 5040.0  # θ = 5040 K / Teff: the Boltzmann factor 10^(−θ χ/eV)
TEFF_INPUTS = ("linear", "inverse")

# helpers


def mlp(sizes) -> nn.Sequential:
    """Linear layers of ``sizes`` (in, hidden…, out) with SiLU between them (none after the last)."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


# classes


class SpectrumEmulator(nn.Module):
    """(n, 3) physical labels → (n, n_wave) normalised flux (see the module docstring).

    ``label_low``, ``label_high`` (3,): the label box the inputs are scaled from (to [−1, 1]);
    ``n_components``: rows of the basis; ``hidden``: widths of the MLP's hidden layers;
    ``teff_input``: "inverse" scales θ = 5040 K / Teff instead of Teff, as line strengths
    (Boltzmann and Saha factors) vary smoothly in θ: the cool stars, whose spectra change
    fastest with Teff, get a larger share of the input range ("linear": Teff itself).
    The buffers ``mean`` (n_wave,), ``basis`` (n_components, n_wave) and ``scale``
    (n_components,) (the training coefficients' standard deviation, which the MLP's outputs
    are multiplied by) are set by training (:meth:`set_basis`).
    """

    def __init__(self, *, n_wave: int, label_low, label_high, n_components: int = 128,
                 hidden=(256, 256, 256), teff_input: str = "linear"):
        super().__init__()
        if teff_input not in TEFF_INPUTS:
            raise ValueError(f"teff_input {teff_input!r}: one of {', '.join(TEFF_INPUTS)}")
        self.teff_input = teff_input
        self.arch = {"kind": "emulator", "kwargs": {
            "n_wave": int(n_wave), "label_low": [float(v) for v in label_low],
            "label_high": [float(v) for v in label_high], "n_components": int(n_components),
            "hidden": [int(h) for h in hidden], "teff_input": teff_input}}
        self.register_buffer("label_low", torch.tensor(label_low, dtype=torch.float32))
        self.register_buffer("label_high", torch.tensor(label_high, dtype=torch.float32))
        self.register_buffer("mean", torch.ones(n_wave))
        self.register_buffer("basis", torch.zeros(n_components, n_wave))
        self.register_buffer("scale", torch.ones(n_components))
        self.register_buffer("wavelength", torch.zeros(n_wave, dtype=torch.float64))
        self.net = mlp([3, *hidden, n_components])

    def set_basis(self, wavelength, mean: torch.Tensor, basis: torch.Tensor,
                  scale: torch.Tensor) -> None:
        """Store the wavelengths [air Å], the mean spectrum, the orthonormal basis and the
        coefficients' scale."""
        self.wavelength.copy_(torch.as_tensor(wavelength, dtype=torch.float64))
        self.mean.copy_(mean)
        self.basis.copy_(basis)
        self.scale.copy_(scale)

    def scaled(self, labels: torch.Tensor) -> torch.Tensor:
        """Physical labels (n, 3) → the MLP's inputs in [−1, 1] over the label box (Teff as
        θ = 5040 K / Teff if ``teff_input`` is "inverse")."""
        low, high = self.label_low, self.label_high
        if self.teff_input == "inverse":
            theta = THETA_KELVIN / labels[:, :1]
            inverse = THETA_KELVIN / torch.stack([high[:1], low[:1]])  # θ grows as Teff falls
            labels = torch.cat([theta, labels[:, 1:]], 1)
            low, high = torch.cat([inverse[0], low[1:]]), torch.cat([inverse[1], high[1:]])
        return 2.0 * (labels - low) / (high - low) - 1.0

    def coefficients(self, labels: torch.Tensor) -> torch.Tensor:
        """(n, n_components) basis coefficients of physical labels (n, 3)."""
        return self.net(self.scaled(labels.to(self.label_low.dtype))) * self.scale

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """Normalised flux (n, n_wave) at physical labels (n, 3) [K, dex, dex]."""
        return self.mean + self.coefficients(labels) @ self.basis


def save_emulator(path, emulator: SpectrumEmulator, record: dict) -> None:
    """Write ``emulator`` (basis in float16: half the size) with its training ``record`` (a
    JSON-compatible dict) to ``path`` (atomically)."""
    import io
    import json

    from ..fileio import atomic_write_bytes

    state = {k: (v.half() if k == "basis" else v) for k, v in emulator.state_dict().items()}
    record = json.loads(json.dumps(record, default=str))  # plain types: loads with weights_only
    buffer = io.BytesIO()
    torch.save({"arch": emulator.arch, "state": state, "record": record}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_emulator(path) -> tuple[SpectrumEmulator, dict]:
    """(emulator in eval mode, float32, its training record) from a file of :func:`save_emulator`;
    ValueError naming the file if it is not one."""
    import pickle

    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        emulator = SpectrumEmulator(**stored["arch"]["kwargs"])
        emulator.load_state_dict({k: v.to(emulator.state_dict()[k].dtype)
                                  for k, v in stored["state"].items()})
    except (OSError, KeyError, TypeError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(f"{path}: not a spectrum emulator file ({error})") from error
    return emulator.eval(), stored.get("record", {})


if __name__ == "__main__":
    emulator = SpectrumEmulator(n_wave=38001, label_low=(3500, 0, -2.5), label_high=(9750, 5, 0.5))
    labels = torch.tensor([[5772.0, 4.44, 0.0], [4250.0, 1.5, -0.5]])
    print("labels", tuple(labels.shape), "→ flux", tuple(emulator(labels).shape))
