"""A spectrum emulator (The Payne's way, Ting et al. 2019): labels → the grid's normalised flux.

(Teff [K], log g [dex], [M/H] [dex]) → the normalised flux at v sin i = 0 on the grid's own
wavelengths (air Å, 0.01 Å), as ``mean + coefficients @ basis``: ``basis`` holds the leading
principal components of the training nodes' spectra (orthonormal rows), a small MLP gives the
coefficients. With a node table (:meth:`SpectrumEmulator.set_nodes`) the coefficients are
instead those of every Table-1 node (the grid's spectra projected on the basis; the MLP's at
the nodes the grid lacks) interpolated by the grid fit's Catmull–Rom spline
(:meth:`~paper_lib.synthetic.grid.Grid.cubic_weights`): the grid fit's model, compressed, which
the MLP alone misses between the nodes by ~2e-3 — enough to move a fit of a real star by
~30 K (``benchmarks/fit_benchmark_stars.py``). Everything after the flux (rotation,
macroturbulence, instrument, échelle pixels) stays the existing forward model, which is linear
in the flux, so a fit renders an emulated star as cheaply as an interpolated one
(:mod:`paper_lib.predict.forward`).

Trained by :mod:`paper_lib.training.emulator` (``python -m paper_lib emulator``); stored as
``models/<profile>/emulator.pt`` with the basis in float16. Shape demo:
``python paper_lib/models/emulator.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

THETA_KELVIN = 5040.0  # θ = 5040 K / Teff: the Boltzmann factor 10^(−θ χ/eV)
TEFF_INPUTS = ("linear", "inverse")
EMULATOR_FILE = "emulator.pt"  # in models/<profile>/

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
    are multiplied by) are set by training (:meth:`set_basis`); ``n_nodes`` > 0: the buffers
    ``node_labels`` (n_nodes, 3) and ``node_coefficients`` (n_nodes, n_components) of the node
    table (:meth:`set_nodes`), which :meth:`coefficients` then interpolates.
    """

    def __init__(self, *, n_wave: int, label_low, label_high, n_components: int = 128,
                 hidden=(256, 256, 256), teff_input: str = "linear", n_nodes: int = 0):
        super().__init__()
        if teff_input not in TEFF_INPUTS:
            raise ValueError(f"teff_input {teff_input!r}: one of {', '.join(TEFF_INPUTS)}")
        self.teff_input = teff_input
        self.arch = {"kind": "emulator", "kwargs": {
            "n_wave": int(n_wave), "label_low": [float(v) for v in label_low],
            "label_high": [float(v) for v in label_high], "n_components": int(n_components),
            "hidden": [int(h) for h in hidden], "teff_input": teff_input,
            **({"n_nodes": int(n_nodes)} if n_nodes else {})}}
        self.register_buffer("label_low", torch.tensor(label_low, dtype=torch.float32))
        self.register_buffer("label_high", torch.tensor(label_high, dtype=torch.float32))
        self.register_buffer("mean", torch.ones(n_wave))
        self.register_buffer("basis", torch.zeros(n_components, n_wave))
        self.register_buffer("scale", torch.ones(n_components))
        self.register_buffer("wavelength", torch.zeros(n_wave, dtype=torch.float64))
        self.register_buffer("node_labels", torch.zeros(n_nodes, 3, dtype=torch.float64))
        self.register_buffer("node_coefficients", torch.zeros(n_nodes, n_components))
        self.net = mlp([3, *hidden, n_components])
        self._node_spline = None  # the node table as a Grid, made at first use

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

    def set_nodes(self, labels, coefficients) -> None:
        """Store the node table: the labels (n_nodes, 3) of every node of the Table-1 axes and
        their coefficients (n_nodes, n_components); from then on :meth:`coefficients`
        interpolates it. The emulator must have been made with that ``n_nodes``."""
        self.node_labels.copy_(torch.as_tensor(labels, dtype=torch.float64))
        self.node_coefficients.copy_(torch.as_tensor(coefficients, dtype=torch.float32))
        self._node_spline = None

    def network_only(self) -> "SpectrumEmulator":
        """A copy without the node table: the MLP's emulator (what the line mask is made with)."""
        kwargs = {k: v for k, v in self.arch["kwargs"].items() if k != "n_nodes"}
        copy = SpectrumEmulator(**kwargs)
        copy.load_state_dict({**copy.state_dict(), **{k: v for k, v in self.state_dict().items()
                                                      if not k.startswith("node_")}})
        return copy.eval()

    def network_sha256(self) -> str:
        """SHA-256 of the MLP's emulator (its settings, basis as stored in float16, weights;
        not the node table): what a line mask made with :meth:`network_only` records."""
        import hashlib
        import json

        digest = hashlib.sha256(json.dumps({k: v for k, v in self.arch["kwargs"].items()
                                            if k != "n_nodes"}, sort_keys=True).encode())
        for name, tensor in self.state_dict().items():
            if not name.startswith("node_"):
                stored = tensor.half() if name == "basis" else tensor
                digest.update(name.encode() + stored.contiguous().numpy().tobytes())
        return digest.hexdigest()

    def network_coefficients(self, labels: torch.Tensor) -> torch.Tensor:
        """(n, n_components) basis coefficients of physical labels (n, 3) from the MLP."""
        return self.net(self.scaled(labels.to(self.label_low.dtype))) * self.scale

    def coefficients(self, labels: torch.Tensor) -> torch.Tensor:
        """(n, n_components) basis coefficients of physical labels (n, 3): the node table's
        Catmull–Rom spline (labels clipped to the label box), or the MLP's without a table."""
        if not len(self.node_labels):
            return self.network_coefficients(labels)
        if self._node_spline is None:
            from ..synthetic.grid import Grid

            self._node_spline = Grid(np.arange(self.node_coefficients.shape[1]),
                                     self.node_labels.numpy(), self.node_coefficients.numpy())
        box = (self.label_low.double().numpy(), self.label_high.double().numpy())
        points = np.clip(labels.detach().double().cpu().numpy(), *box)
        return torch.from_numpy(self._node_spline.interpolate(points, "cubic")).to(labels.device)

    def _load_from_state_dict(self, *args, **kwargs):  # a new table: remake the spline
        self._node_spline = None
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """Normalised flux (n, n_wave) at physical labels (n, 3) [K, dex, dex]."""
        return self.mean + self.coefficients(labels) @ self.basis


def emulator_file(profile_name: str, models_dir=None):
    """The path of a profile's emulator: ``models_dir`` (default ``models/<profile_name>/``) /
    :data:`EMULATOR_FILE`."""
    from pathlib import Path

    from .. import paths

    return Path(models_dir or paths.models / profile_name) / EMULATOR_FILE


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
        empty_table = {k: v for k, v in emulator.state_dict().items() if k.startswith("node_")}
        emulator.load_state_dict({**empty_table,  # files made before the node table: the MLP
                                  **{k: v.to(emulator.state_dict()[k].dtype)
                                     for k, v in stored["state"].items()}})
    except (OSError, KeyError, TypeError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(f"{path}: not a spectrum emulator file ({error})") from error
    return emulator.eval(), stored.get("record", {})


if __name__ == "__main__":
    emulator = SpectrumEmulator(n_wave=38001, label_low=(3500, 0, -2.5), label_high=(9750, 5, 0.5))
    labels = torch.tensor([[5772.0, 4.44, 0.0], [4250.0, 1.5, -0.5]])
    print("labels", tuple(labels.shape), "→ flux", tuple(emulator(labels).shape))
