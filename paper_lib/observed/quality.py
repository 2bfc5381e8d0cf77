"""Quality of a prediction on a real spectrum: SNR, out-of-distribution score, flags.

**SNR** is estimated from the spectrum itself (DER_SNR, Stoehr et al. 2008: noise =
1.4826/√6 · median |2fᵢ − fᵢ₋₂ − fᵢ₊₂| over the valid pixels of each normalised order; the
median over the 8 orders).

**Out-of-distribution score.** The profile's denoising auto-encoder (``dae.pt``) was trained to
turn noisy *synthetic* spectra into clean ones. On a spectrum like those, its residual
r = x − DAE(x) is the noise plus a small reconstruction error; on a spectrum unlike anything
in training (an M dwarf's molecular bands, a wrong wavelength scale) the DAE cannot reproduce
the lines and the residual grows beyond the noise. The *excess* e = √max(⟨r²⟩ − σ̂², 0) over
the valid pixels (σ̂ from DER_SNR) is compared with its 99th percentile on synthetic test
spectra at the same estimated SNR (the calibration, :func:`calibrate_ood`, written to
``models/<profile>/ood_calibration.json``); ``ood_score`` = e / that threshold, and a score
above 1 flags the spectrum (by construction ≈ 1 % of synthetic spectra). Measured with the
``cpu`` weights (docs/predict.md): the two real solar spectra score below 1, the M dwarfs Gl 581 and
Gl 273 about 2.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_json, file_sha256

DER_SNR_FACTOR = 1.482602 / np.sqrt(6.0)
CALIBRATION_SNRS = (10.0, 20.0, 50.0, 100.0, 200.0, 300.0)  # the SNR range of real spectra
CALIBRATION_QUANTILE = 0.99  # ≤ 1 % of synthetic spectra flagged at each SNR
CALIBRATION_FILE = "ood_calibration.json"
OOD_FORMAT = 1


def estimate_snr(image, mask=None) -> np.ndarray:
    """DER_SNR signal-to-noise ratio of normalised images (N, 8, 4096) → (N,) (median of the
    orders' estimates); ``mask`` True where a pixel holds data (default: all)."""
    image = np.asarray(image, dtype=np.float64)
    mask = np.ones(image.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    second = np.abs(2.0 * image[..., 2:-2] - image[..., :-4] - image[..., 4:])
    ok = mask[..., 2:-2] & mask[..., :-4] & mask[..., 4:]
    noise = DER_SNR_FACTOR * _nanmedian_rows(np.where(ok, second, np.nan))
    level = _nanmedian_rows(np.where(mask, image, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nanmedian(level / noise, axis=-1)


def filled_pixels_left_out(images) -> np.ndarray:
    """Boolean like ``images`` (synthetic model inputs): False where a pixel holds exactly the
    fill value (1.0) — the CCD gap and masked wavelengths of realism, which carry no noise — so
    that :func:`estimate_snr` measures a synthetic image as it measures a real one, whose
    filled pixels its model-input mask leaves out."""
    from .model_input import FILL_VALUE

    return np.asarray(images) != FILL_VALUE


def _nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """``np.nanmedian(values, axis=-1)`` (the same numbers, NaN for a row without values) by
    one sort instead of numpy's row-by-row loop: the two middle finite values of each row."""
    ordered = np.sort(values, axis=-1)  # NaN sort to the end
    count = (~np.isnan(values)).sum(axis=-1)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[..., None], -1)[..., 0]
    high = np.take_along_axis(ordered, (count // 2)[..., None], -1)[..., 0]
    middle = np.where(count % 2 == 1, high, (low + high) / 2.0)
    return np.where(count > 0, middle, np.nan)


def residual_excess(dae, images, masks=None, *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(excess (N,), snr (N,)): the DAE residual's RMS beyond the estimated noise, over valid pixels."""
    import torch

    from ..training.loop import predict_scaled

    images = np.asarray(images, dtype=np.float32)
    masks = np.ones(images.shape, dtype=bool) if masks is None else np.asarray(masks, dtype=bool)
    denoised = predict_scaled(dae, torch.as_tensor(images), batch_size=batch_size).numpy()
    snr = estimate_snr(images, masks)
    residual2 = np.where(masks, (images - denoised).astype(np.float64) ** 2, 0.0)
    mean2 = residual2.sum(axis=(1, 2)) / np.maximum(masks.sum(axis=(1, 2)), 1)
    return np.sqrt(np.maximum(mean2 - 1.0 / snr**2, 0.0)), snr


def calibrate_ood(dae, dae_path, batches: dict, *, source: str) -> dict:
    """The OOD calibration record from synthetic ``batches`` {nominal SNR: (N, 8, 4096) images}.

    Per SNR: the median estimated SNR and the CALIBRATION_QUANTILE of the excess. Each spectrum
    is then scored against the thresholds interpolated at its own estimated SNR, and all
    thresholds are raised by one common factor (≥ 1) until no SNR's batch has more than
    1 − CALIBRATION_QUANTILE of its spectra flagged; the flagged fractions are recorded.
    """
    rows, scored = [], {}
    for snr, images in sorted(batches.items()):
        excess, estimated = scored[snr] = residual_excess(dae, images)
        rows.append({"snr": float(snr), "estimated_snr": float(np.median(estimated)),
                     "n": int(len(excess)), "median_excess": float(np.median(excess)),
                     "threshold": float(np.quantile(excess, CALIBRATION_QUANTILE))})
    record = {"format": OOD_FORMAT, "method": "DAE residual excess over the DER_SNR noise",
              "quantile": CALIBRATION_QUANTILE, "source": source,
              "dae": Path(dae_path).name, "dae_sha256": file_sha256(dae_path), "rows": rows,
              "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    first = OODCalibration(record)
    factor = max(1.0, *(float(np.quantile(first.score(*scored[snr]), CALIBRATION_QUANTILE,
                                          method="higher")) for snr in scored))
    for row in rows:
        row["threshold"] *= factor
    record["threshold_factor"] = factor
    calibration = OODCalibration(record)
    record["flagged_fraction"] = {f"{snr:g}": float(np.mean(calibration.score(*scored[snr]) > 1.0))
                                  for snr in sorted(scored)}
    return record


def write_ood_calibration(models_dir, record: dict) -> Path:
    path = Path(models_dir) / CALIBRATION_FILE
    atomic_write_json(path, record)
    return path


class OODCalibration:
    """Thresholds of the excess against estimated SNR (log-linear between the calibration
    SNRs, constant beyond them).

    At low SNR a good DAE's residual can stay within the noise for every calibration spectrum,
    so the table's threshold there is 0 and any excess at all would divide by zero: such rows
    take the smallest positive threshold of the table (the excess the calibration did see at
    higher SNR), so a low-SNR spectrum is flagged only for an excess that is one somewhere.
    """

    def __init__(self, record: dict):
        self.record = record
        rows = sorted(record["rows"], key=lambda r: r["estimated_snr"])
        self.log_snr = np.log([r["estimated_snr"] for r in rows])
        threshold = np.array([r["threshold"] for r in rows], dtype=np.float64)
        positive = threshold[threshold > 0]
        if positive.size == 0:
            raise ValueError("OOD calibration holds no positive threshold; remake it with "
                             "python -m paper_lib ood-calibrate --profile <profile>")
        self.threshold = np.maximum(threshold, positive.min())

    @classmethod
    def load(cls, models_dir, dae_path) -> "OODCalibration | None":
        """The calibration beside the models, or None if absent or made for another DAE."""
        path = Path(models_dir) / CALIBRATION_FILE
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except ValueError as error:  # e.g. a truncated copy
            raise ValueError(f"{path}: not a readable OOD calibration ({error}); remake it with "
                             "python -m paper_lib ood-calibrate --profile <profile>, or delete "
                             "it (ood_score is then not computed)") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: not an OOD calibration record; remake it with "
                             "python -m paper_lib ood-calibrate --profile <profile>")
        if record.get("format") != OOD_FORMAT or record.get("dae_sha256") != file_sha256(dae_path):
            return None
        return cls(record)

    def score(self, excess, snr) -> np.ndarray:
        """excess / threshold at each spectrum's estimated SNR (> 1: out of distribution)."""
        log_snr = np.log(np.clip(np.asarray(snr, dtype=np.float64), 1e-3, None))
        return np.asarray(excess) / np.interp(log_snr, self.log_snr, self.threshold)
