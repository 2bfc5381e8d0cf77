"""The training loop: exact resume, lr schedule, checkpoint files and their errors, the
notebook entry point train_variant, and predict_scaled."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from paper_lib.models import build_model, describe
from paper_lib.profiles import ALL_VARIANTS, get_profile
from paper_lib.training.checkpoints import TRAINING_STATE, history_path, load_checkpoint, load_model
from paper_lib.training.config import TrainConfig
from paper_lib.training.loop import fit, make_optimizer, make_scheduler, predict_scaled
from paper_lib.training.variants import parse_variant, train_variant, variant_config

from .conftest import TINY, Batch, LineSource

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def val_batch() -> Batch:
    return LineSource().sample(6, np.random.default_rng(123))


def config(**changes) -> TrainConfig:
    base = {"epochs": 3, "steps_per_epoch": 3, "batch_size": 4, "lr": 1e-3, "lr_decay_fraction": 0.34, "seed": 7}
    return TrainConfig(**{**base, **changes})


def new_model(kind: str = "resnet", seed: int = 0, **kwargs):
    """A tiny model; the resnet with dropout, whose random masks a resume must restore."""
    torch.manual_seed(seed)
    dropout = {"dropout": 0.2} if kind == "resnet" else {}
    return build_model(kind, **{**TINY[kind], **dropout, **kwargs})


def run(model, path, val_batch, cfg=None, **kwargs):
    return fit(model, LineSource(), val_batch, cfg or config(), path, progress=False, num_threads=1, **kwargs)


# resume


@pytest.mark.parametrize("prefetch", [False, True])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, val_batch, prefetch):
    """Dropout (torch RNG), fresh data (numpy RNG), Adam moments, BN statistics and the lr
    schedule must all be restored for the losses after the restart to agree; drawing the
    next batch in a background thread must not change anything."""
    straight = run(new_model(), tmp_path / "straight.pt", val_batch, prefetch=False)
    first = run(new_model(), tmp_path / "split.pt", val_batch, until_epoch=1, prefetch=prefetch)
    assert [h["epoch"] for h in first] == [1]
    # another initialisation: the weights must come from the file
    resumed = run(new_model(seed=99), tmp_path / "split.pt", val_batch, prefetch=prefetch)
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    for a, b in zip(straight, resumed):
        np.testing.assert_allclose(b["step_losses"], a["step_losses"], rtol=1e-6)
        np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=1e-6)
    final_a = load_model(tmp_path / "straight.pt").state_dict()
    final_b = load_model(tmp_path / "split.pt").state_dict()
    for key in final_a:
        torch.testing.assert_close(final_b[key], final_a[key], rtol=1e-6, atol=1e-7)


def test_finished_run_returns_its_history_without_training(tmp_path, val_batch):
    path = tmp_path / "done.pt"
    history = run(new_model(), path, val_batch, config(epochs=1))
    stamp = path.stat().st_mtime_ns
    again = run(new_model(), path, val_batch, config(epochs=1))
    assert again == history and path.stat().st_mtime_ns == stamp


def test_lr_is_decayed_for_the_last_fraction_of_steps():
    cfg = config(epochs=2, steps_per_epoch=5, lr=1e-3, lr_decay_fraction=0.3)
    model = new_model()
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(cfg.total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(lrs, [1e-3] * 7 + [1e-4] * 3)
    paper = get_profile("paper")
    paper_cfg = config(epochs=paper.epochs, steps_per_epoch=paper.steps_per_epoch, lr_decay_fraction=paper.lr_decay_fraction)
    assert paper_cfg.decay_start_step == 700 * paper.steps_per_epoch  # the last 50 of 750 epochs


def test_optimizers_follow_the_paper():
    profile = get_profile("smoke")

    regressor = variant_config(parse_variant("resnet_full"), profile)
    dae = variant_config(parse_variant("dae"), profile)
    assert (regressor.optimizer, regressor.lr, regressor.epochs) == ("adam", 1e-4, profile.epochs)
    assert (dae.optimizer, dae.lr, dae.epochs, dae.task) == ("adamw", 3e-4, profile.dae_epochs, "denoising")
    assert isinstance(make_optimizer(new_model("dae"), dae), torch.optim.AdamW)
    assert (get_profile("paper").regressor_lr, get_profile("paper").dae_lr) == (1e-4, 3e-4)
    cpu = get_profile("cpu")
    assert variant_config(parse_variant("attention_full"), cpu).lr == cpu.regressor_lr
    assert variant_config(parse_variant("dae"), cpu, lr=5e-4).lr == 5e-4


# files


def test_checkpoint_and_history_files(tmp_path, val_batch):
    path = tmp_path / "models" / "run.pt"
    history = run(new_model(), path, val_batch, config(epochs=2, steps_per_epoch=2))
    assert sorted(os.listdir(path.parent)) == ["run.history.json", "run.pt"]  # no temporary files left
    record = json.loads(history_path(path).read_text())
    assert record["epochs_done"] == 2 and record["history"] == json.loads(json.dumps(history))
    assert record["arch"]["kind"] == "resnet"
    for entry in history:
        assert len(entry["step_losses"]) == 2 and len(entry["val_mae"]) == 4
        assert np.isfinite(entry["val_loss"]) and entry["spectra_per_s"] > 0
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 2 and ckpt["config"]["epochs"] == 2
    assert {"model", "history", "arch", "config"} <= set(ckpt)
    assert not set(TRAINING_STATE) & set(ckpt)  # a finished run keeps no optimiser state


def test_interrupted_checkpoint_keeps_the_training_state(tmp_path, val_batch):
    path = tmp_path / "run.pt"
    run(new_model(), path, val_batch, config(epochs=2, steps_per_epoch=2), until_epoch=1)
    ckpt = load_checkpoint(path)
    assert set(TRAINING_STATE) <= set(ckpt)
    assert {"numpy", "torch"} <= set(ckpt["rng"][0])


def test_finished_checkpoint_with_training_state_is_slimmed(tmp_path, val_batch):
    """A finished checkpoint that still holds its optimiser state (as written before finished
    runs were slimmed) is slimmed on the next call: weights and history stay, nothing trains."""
    path = tmp_path / "run.pt"
    history = run(new_model(), path, val_batch, config(epochs=2, steps_per_epoch=2), until_epoch=1)
    full = load_checkpoint(path)
    assert set(TRAINING_STATE) <= set(full)
    again = run(new_model(seed=5), path, val_batch, config(epochs=1, steps_per_epoch=2))  # 1 of 1 done
    slim = load_checkpoint(path)
    assert again == history and not set(TRAINING_STATE) & set(slim)
    for key, value in full["model"].items():
        torch.testing.assert_close(slim["model"][key], value)
    weights = sum(v.numel() * v.element_size() for v in full["model"].values())
    assert path.stat().st_size < 1.5 * weights  # Adam's two moments alone would double it


def test_finished_checkpoint_cannot_train_further(tmp_path, val_batch):
    path = tmp_path / "run.pt"
    run(new_model(), path, val_batch, config(epochs=1, steps_per_epoch=2))
    with pytest.raises(ValueError, match="no optimiser state.*cannot train on to 3 epochs"):
        run(new_model(), path, val_batch, config(epochs=3, steps_per_epoch=2))


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, val_batch, monkeypatch):
    path = tmp_path / "run.pt"
    run(new_model(), path, val_batch, config(epochs=2, steps_per_epoch=1), until_epoch=1)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        run(new_model(), path, val_batch, config(epochs=2, steps_per_epoch=1))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["run.history.json", "run.pt"]


def test_trained_model_loads_back_and_predicts_the_same(tmp_path, val_batch):
    model = new_model("attention", covariance="full")
    run(model, tmp_path / "att.pt", val_batch, config(epochs=1, steps_per_epoch=2))
    loaded = load_model(tmp_path / "att.pt", kind="attention", covariance="full")
    assert not loaded.training and describe(loaded) == describe(model)
    a, b = predict_scaled(model, val_batch.noisy, batch_size=4), predict_scaled(loaded, val_batch.noisy, batch_size=4)
    torch.testing.assert_close(a.mean, b.mean)
    torch.testing.assert_close(a.scale_tril, b.scale_tril)
    assert a.mean.shape == (6, 4) and a.mean.device.type == "cpu"
    with pytest.raises(ValueError, match="no spectra"):
        predict_scaled(model, torch.empty(0, 8, 4096))


def test_cpu_threads_leave_busy_cores_alone(monkeypatch):
    from paper_lib.training import runtime

    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (0.8, 0.0, 0.0))  # only us
    assert runtime.default_cpu_threads() == 4
    assert runtime.default_cpu_threads(local_world_size=2) == 2
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (3.2, 0.0, 0.0))  # two cores busy elsewhere
    assert runtime.default_cpu_threads() == 2
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert runtime.default_cpu_threads() == 1


# errors


def test_checkpoint_of_another_architecture_is_refused(tmp_path, val_batch):
    path = tmp_path / "run.pt"
    run(new_model("resnet"), path, val_batch, config(epochs=1, steps_per_epoch=1))
    with pytest.raises(ValueError, match="does not match"):
        run(new_model("attention"), path, val_batch, config(epochs=1, steps_per_epoch=1))
    with pytest.raises(ValueError, match="does not match"):
        run(new_model("resnet", width=8), path, val_batch, config(epochs=1, steps_per_epoch=1))
    with pytest.raises(ValueError, match="not a 'attention' network"):
        load_model(path, kind="attention")
    with pytest.raises(ValueError, match="'full' covariance"):
        load_model(path, covariance="full")
    with pytest.raises(ValueError, match="other settings"):
        run(new_model("resnet"), path, val_batch, config(epochs=2, steps_per_epoch=1, lr=5e-4))


def test_corrupt_and_foreign_files_raise_clear_errors(tmp_path, val_batch):
    path = tmp_path / "run.pt"
    run(new_model(), path, val_batch, config(epochs=1, steps_per_epoch=1))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable paper_lib checkpoint"):
        load_model(truncated)
    with pytest.raises(ValueError, match="not a readable paper_lib checkpoint"):
        run(new_model(), truncated, val_batch, config(epochs=1, steps_per_epoch=1))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a paper_lib checkpoint"):
        load_model(foreign)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_model(tmp_path / "missing.pt")
    tampered = load_checkpoint(path)
    tampered["model"].pop("head.linear.weight")
    torch.save(tampered, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="do not fit its recorded architecture"):
        load_model(tmp_path / "tampered.pt")


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="optimizer"):
        config(optimizer="sgd")
    with pytest.raises(ValueError, match="lr_decay_fraction"):
        config(lr_decay_fraction=1.5)
    with pytest.raises(ValueError, match="unknown variant"):
        parse_variant("resnet_banded")


# the notebook entry point


def test_every_profile_variant_parses():
    for name in ALL_VARIANTS:
        spec = parse_variant(name)
        assert spec.network in ("resnet", "attention") and spec.covariance in ("diagonal", "full")
        assert name == (f"{spec.network}_{spec.covariance}" + "_dae" * spec.dae
                        + "_limited" * spec.limited + "_real" * spec.real)
    assert parse_variant("attention_full_dae").base == "attention_full"
    assert parse_variant("resnet_diagonal_real").real and not parse_variant("resnet_diagonal").real
    with pytest.raises(ValueError, match="unknown variant"):
        parse_variant("resnet_diagonal_limited_real")


def test_base_variants():
    from paper_lib.training.variants import base_variant

    assert base_variant(parse_variant("resnet_diagonal_real")) == "resnet_diagonal"
    assert base_variant(parse_variant("attention_diagonal_limited")) == "attention_diagonal"
    assert base_variant(parse_variant("attention_full")) == "attention_diagonal"
    assert base_variant(parse_variant("resnet_diagonal")) is None
    assert base_variant(parse_variant("resnet_full_dae")) is None  # fine-tunes its base itself
    assert base_variant(parse_variant("dae")) is None


def test_real_variant_has_no_dropout_its_base_keeps_the_profiles():
    from paper_lib.echelle.line_mask import line_mask_intervals, pixel_runs
    from paper_lib.training.variants import network_settings

    assert get_profile("paper").resnet["dropout"] == 0.2  # the paper's setting
    assert get_profile("cpu").resnet["dropout"] == 0.0  # measured: dropout slows a small network
    for name in ("cpu", "paper"):
        profile = get_profile(name)
        assert network_settings(parse_variant("resnet_diagonal"), profile) == profile.resnet
        real = network_settings(parse_variant("resnet_diagonal_real"), profile)
        assert real == {**profile.resnet, "dropout": 0.0,  # and the profile's line mask
                        "hidden_runs": pixel_runs(line_mask_intervals(profile))}
        assert real["hidden_runs"]
        # a network without that setting is left as the profile says
        attention = network_settings(parse_variant("attention_diagonal"), profile)
        assert attention == profile.attention and "dropout" not in attention


def test_cosine_schedule_warms_up_and_decays():
    from paper_lib.training.loop import lr_factor

    cfg = config(lr_schedule="cosine", warmup_fraction=0.1, epochs=10, steps_per_epoch=10)
    factors = [lr_factor(step, cfg) for step in range(cfg.total_steps)]
    assert factors[0] == pytest.approx(0.01) and max(factors) == pytest.approx(1.0, abs=1e-3)
    assert int(np.argmax(factors)) == 10 and factors[-1] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))  # monotonic decay
    assert [lr_factor(s, config()) for s in (0, config().decay_start_step)] == [1.0, 0.1]
    with pytest.raises(ValueError, match="lr_schedule"):
        config(lr_schedule="linear")


def test_derived_variant_starts_from_its_base(tmp_path, val_batch):
    """init_from_base: resnet_full takes every resnet_diagonal tensor but its head's last layer."""
    profile = dataclasses.replace(get_profile("smoke"), resnet=TINY["resnet"], epochs=1,
                                  finetune_epochs=1, steps_per_epoch=1, batch_size=4,
                                  init_from_base=True)
    with pytest.raises(FileNotFoundError, match="resnet_diagonal"):
        train_variant("resnet_full", profile, LineSource(), val_batch, tmp_path, progress=False,
                      num_threads=1)
    base = train_variant("resnet_diagonal", profile, LineSource(), val_batch, tmp_path,
                         progress=False, num_threads=1).model
    from paper_lib.training.variants import _transfer_weights
    from paper_lib.models import build_model

    full = build_model("resnet", covariance="full", **TINY["resnet"])
    copied = _transfer_weights(full, tmp_path / "resnet_diagonal.pt")
    own, theirs = full.state_dict(), base.state_dict()
    assert 0 < copied < len(own)
    same = [k for k in own if k in theirs and own[k].shape == theirs[k].shape]
    assert all(torch.equal(own[k], theirs[k]) for k in same)


def test_train_variant_dae_then_regressor_behind_it(tmp_path, val_batch):
    profile = dataclasses.replace(
        get_profile("smoke"), resnet=TINY["resnet"], dae=TINY["dae"],
        epochs=1, dae_epochs=1, finetune_epochs=2, steps_per_epoch=2, batch_size=4,
    )
    source = LineSource()
    dae = train_variant("dae", profile, source, val_batch, tmp_path, progress=False, num_threads=1)
    assert describe(dae.model)["kind"] == "dae" and dae.checkpoint == tmp_path / "dae.pt"
    assert "val_input_mse" in dae.history[-1]
    base = train_variant("resnet_diagonal", profile, source, val_batch, tmp_path, progress=False, num_threads=1)
    assert len(base.history) == profile.epochs

    with pytest.raises(ValueError, match="needs dae="):
        train_variant("resnet_diagonal_dae", profile, source, val_batch, tmp_path, progress=False, num_threads=1)
    tuned = train_variant("resnet_diagonal_dae", profile, source, val_batch, tmp_path,
                          dae=tmp_path / "dae.pt", progress=False, num_threads=1, until_epoch=0)
    # until_epoch=0: set up only — the regressor starts from the trained base weights
    for key, value in base.model.state_dict().items():
        torch.testing.assert_close(tuned.model.regressor.state_dict()[key], value)
    tuned = train_variant("resnet_diagonal_dae", profile, source, val_batch, tmp_path,
                          dae=dae.model, progress=False, num_threads=1)
    assert describe(tuned.model)["kind"] == "denoised"
    assert len(tuned.history) == profile.finetune_epochs
    for key, value in dae.model.state_dict().items():  # the DAE stayed frozen
        torch.testing.assert_close(tuned.model.dae.state_dict()[key], value)

    with pytest.warns(UserWarning, match="from scratch"):
        train_variant("resnet_full_dae", profile, source, val_batch, tmp_path, dae=dae.model,
                      progress=False, num_threads=1, until_epoch=0)
    with pytest.raises(ValueError, match="does not match"):  # the DAE checkpoint is not a resnet
        train_variant("resnet_diagonal_dae", profile, source, val_batch, tmp_path, dae=dae.model,
                      init_from=tmp_path / "dae.pt", progress=False, num_threads=1, until_epoch=0)
