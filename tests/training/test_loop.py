"""Training: config, VGG loading, losses, data, a CPU smoke run, resume and the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from stylebox.training.config import ConfigError, TrainConfig
from stylebox.training.data import PhotoBank, list_photos
from stylebox.training.losses import PerceptualLoss, gram
from stylebox.training.vgg import VGGError, load_vgg
from tests.conftest import ROOT, make_train_data, random_vgg, write_fake_vgg, write_train_config

SHARED_VGG = ROOT.parent / "shared/data/vgg/vgg19_features_to_relu5_1_fp16.pth"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_train_data(tmp_path)


# -- config ------------------------------------------------------------------------------------

def test_default_config_round_trips_and_makes_the_card():
    cfg = TrainConfig.load(ROOT / "configs/default.toml")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    card = cfg.card()
    assert card.style_names == ["candy", "la_muse", "mosaic", "rain_princess", "starry_night",
                                "the_scream", "udnie", "wave"]
    assert card.alpha == 0.25 and card.training["style_layers"] == cfg.style_layers
    assert all(s.title for s in card.styles)


def test_another_alpha_renames_the_model_unless_a_name_is_given():
    cfg = TrainConfig.load(ROOT / "configs/default.toml")
    assert cfg.name == "stylebox-a0.25"
    assert cfg.replace(alpha=1.0).card().name == "stylebox-a1"  # `--alpha 1`
    assert cfg.replace(alpha=0.5).name == "stylebox-a0.5"
    assert cfg.replace(alpha=0.5, name="mine").name == "mine"
    assert cfg.replace(alpha=0.25, steps=9).name == "stylebox-a0.25"


def test_overrides_parse_toml_values(data):
    cfg = TrainConfig.load(write_train_config(data), ["style_weight=2e5", "amp=false",
                                                      'style_layers=["relu1_1"]', "photos=x/y"])
    assert cfg.style_weight == 2e5 and cfg.amp == "off"
    assert cfg.style_layers == ["relu1_1"] and cfg.photos == "x/y"
    assert cfg.replace(steps=9).steps == 9


@pytest.mark.parametrize("bad", [["nope=1"], ["style_layers=['relu9_9']"], ["steps=0"],
                                 ["lr_schedule='linear'"], ["novalue"]])
def test_bad_config_values_are_rejected(data, bad):
    with pytest.raises(ConfigError):
        TrainConfig.load(write_train_config(data), bad)


# -- VGG ---------------------------------------------------------------------------------------

def test_vgg_file_loads_fp16_state_dict_and_stops_at_the_deepest_layer(tmp_path):
    path = write_fake_vgg(tmp_path / "v.pth", "relu2_1", seed=3)
    vgg = load_vgg(path, ["relu1_1", "relu2_1"])
    assert len(vgg.features) == 7  # conv, relu, conv, relu, pool, conv, relu
    ref = torch.load(path)["5.weight"].float()
    assert torch.equal(vgg.features[5].weight, ref)
    out = vgg(torch.rand(1, 3, 16, 16))
    assert out["relu1_1"].shape == (1, 64, 16, 16) and out["relu2_1"].shape == (1, 128, 8, 8)
    assert not any(p.requires_grad for p in vgg.parameters())


def test_vgg_file_too_shallow_or_missing_is_a_clear_error(tmp_path):
    path = write_fake_vgg(tmp_path / "v.pth", "relu1_2")
    with pytest.raises(VGGError, match="does not reach layer relu3_1"):
        load_vgg(path, ["relu3_1"])
    with pytest.raises(VGGError, match="not found"):
        load_vgg(tmp_path / "missing.pth", ["relu1_1"])


@pytest.mark.skipif(not SHARED_VGG.is_file(), reason="../shared/data VGG file not present")
def test_shared_vgg_file_loads_to_relu5_1():
    vgg = load_vgg(SHARED_VGG, ["relu2_2", "relu5_1"])
    out = vgg(torch.rand(1, 3, 32, 32))
    assert out["relu5_1"].shape == (1, 512, 2, 2)
    assert torch.isfinite(out["relu5_1"]).all() and out["relu2_2"].abs().sum() > 0


# -- losses ------------------------------------------------------------------------------------

def test_gram_is_normalised_feature_correlation():
    f = torch.randn(2, 4, 3, 5)
    g = gram(f)
    assert g.shape == (2, 4, 4)
    manual = f[1].reshape(4, 15) @ f[1].reshape(4, 15).T / (4 * 15)
    assert torch.allclose(g[1], manual, atol=1e-6)


def test_style_loss_indexes_each_images_own_style_target():
    vgg = random_vgg(["relu1_1", "relu1_2", "relu2_1"])
    loss = PerceptualLoss(vgg, ["relu1_2"], ["relu1_1", "relu2_1"])
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32) ** 3
    loss.set_style_targets([a, b])
    assert loss.targets["relu2_1"].shape == (2, 128, 128)
    x = torch.cat([a, b])
    exact = loss(x, x, torch.tensor([0, 1]))  # each image is its own style: zero loss
    swapped = loss(x, x, torch.tensor([1, 0]))
    assert exact["style"].item() < 1e-6 and exact["content"].item() == 0
    assert swapped["style"].item() > 1e-3
    assert torch.isclose(swapped["loss"], swapped["style"] * 2.0)  # weights: content 1, style 2


def test_style_weight_scale_weighs_only_its_own_styles_samples():
    """`style_weight_scale = {b = 0.5}` halves b's samples' style term and leaves a's."""
    vgg = random_vgg(["relu1_1", "relu1_2", "relu2_1"])
    styles = [{"name": "a", "path": "a.png"}, {"name": "b", "path": "b.png"}]
    cfg = TrainConfig(styles=styles, style_weight_scale={"b": 0.5})
    assert cfg.style_factors() == [1.0, 0.5] and TrainConfig(styles=styles).style_factors() is None
    assert cfg.card().training["style_weight_scale"] == {"b": 0.5}
    assert "style_weight_scale" not in TrainConfig(styles=styles).card().training
    with pytest.raises(ConfigError, match="style_weight_scale names 'c'"):
        TrainConfig(styles=styles, style_weight_scale={"c": 2})
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32) ** 3
    plain = PerceptualLoss(vgg, ["relu1_2"], ["relu1_1", "relu2_1"])
    scaled = PerceptualLoss(vgg, ["relu1_2"], ["relu1_1", "relu2_1"])
    plain.set_style_targets([a, b])
    scaled.set_style_targets([a, b], cfg.style_factors())
    with pytest.raises(ValueError, match="1 style factors for 2 styles"):
        PerceptualLoss(vgg, ["relu1_2"], ["relu1_1"]).set_style_targets([a, b], [1.0])
    x = torch.cat([b, a])  # each image scored against the other style: both terms > 0
    for idx, factor in (([0, 0], 1.0), ([1, 1], 0.5)):
        want = plain(x, x, torch.tensor(idx))["style"] * factor
        assert torch.isclose(scaled(x, x, torch.tensor(idx))["style"], want, rtol=1e-6)


def test_content_loss_is_relative_and_tv_is_counted():
    vgg = random_vgg(["relu1_1", "relu1_2"])
    loss = PerceptualLoss(vgg, ["relu1_2"], ["relu1_1"], tv_weight=2.0)
    photo = torch.rand(2, 3, 16, 16)
    loss.set_style_targets([photo[:1]])
    parts = loss(torch.zeros_like(photo), photo, torch.tensor([0, 0]))
    assert 0.1 < parts["content"].item() < 10  # a black output is "100 % wrong", give or take
    noisy = loss(photo, photo, torch.tensor([0, 0]))
    assert noisy["tv"].item() > 0 and parts["tv"].item() == 0


# -- data --------------------------------------------------------------------------------------

def test_photo_bank_crops_flips_and_is_deterministic(data):
    files = list_photos(data / "photos")
    assert len(files) == 7 and {f.suffix for f in files} == {".png", ".jpg", ".webp"}
    bank = PhotoBank(files, crop=32)
    assert min(min(p.shape[1:]) for p in bank.photos) >= 32  # the 20x24 photo was upscaled
    b1 = bank.batch(5, torch.Generator().manual_seed(1))
    b2 = bank.batch(5, torch.Generator().manual_seed(1))
    assert b1.shape == (5, 3, 32, 32) and b1.dtype == torch.float32
    assert b1.min() >= 0 and b1.max() <= 1 and torch.equal(b1, b2)


# -- training ----------------------------------------------------------------------------------

def _log(out: Path) -> list[dict]:
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


def test_cpu_smoke_training_loss_falls(data, tmp_path):
    from stylebox.training.loop import train

    cfg = TrainConfig.load(write_train_config(data, steps=40))
    summary = train(cfg, tmp_path / "run", progress=False)
    rows = _log(tmp_path / "run")
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 40 and summary["step"] == 40
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.7 * first, f"loss did not fall: {first:.4g} -> {last:.4g}"
    state = torch.load(tmp_path / "run/last.pt", weights_only=False)
    assert state["step"] == 40 and state["card"]["training"]["steps_done"] == 40
    assert state["card"]["styles"][0]["name"] == "stripes"


def test_resume_gives_the_same_weights_as_one_run(data, tmp_path):
    from stylebox.training.loop import train

    cfg = TrainConfig.load(write_train_config(data, steps=6))
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg.replace(steps=3), tmp_path / "split", progress=False)
    train(cfg, tmp_path / "split", progress=False)  # resumes at step 3
    a = torch.load(tmp_path / "straight/last.pt", weights_only=False)
    b = torch.load(tmp_path / "split/last.pt", weights_only=False)
    assert b["step"] == 6 and len(_log(tmp_path / "split")) == 6
    for k, v in a["model"].items():
        assert torch.allclose(v, b["model"][k], atol=1e-6), k


def test_train_applies_style_weight_scale_to_its_styles(data, tmp_path):
    """Every style at factor 0: the logged (weighted) style term is 0, and the card says why."""
    from stylebox.training.loop import train

    cfg = TrainConfig.load(write_train_config(data, steps=2))
    cfg = cfg.replace(style_weight_scale={s.name: 0.0 for s in cfg.styles})
    train(cfg, tmp_path / "run", progress=False)
    assert all(float(r["style"]) == 0 and float(r["content"]) > 0 for r in _log(tmp_path / "run"))
    card = torch.load(tmp_path / "run/last.pt", weights_only=False)["card"]
    assert card["training"]["style_weight_scale"] == {s.name: 0.0 for s in cfg.styles}


def test_resume_refuses_a_checkpoint_with_other_styles(data, tmp_path):
    from stylebox.training.loop import TrainError, train

    cfg = TrainConfig.load(write_train_config(data, steps=1))
    train(cfg, tmp_path / "run", progress=False)
    other = cfg.replace(styles=[{"name": "only", "path": "styles/stripes.png"}], steps=2)
    with pytest.raises(TrainError, match="Use a new --out"):
        train(other, tmp_path / "run", progress=False)


def test_train_cli_reports_missing_data_cleanly(data, tmp_path, capsys):
    from stylebox.cli import main

    rc = main(["train", "--config", str(write_train_config(data)), "--out",
               str(tmp_path / "run"), "--photos", "nowhere", "--no-progress"])
    assert rc == 2 and "photo folder" in capsys.readouterr().err


class TickingClock:
    """Stands in for a module's `time`: each monotonic() reading is 12.3 ms after the last,
    so a run's recorded duration is known exactly however fast or loaded the host is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 0.0123
        return self.now

    def __getattr__(self, name: str):
        import time

        return getattr(time, name)


def test_sigterm_stops_at_the_next_step_with_a_checkpoint(data, tmp_path, monkeypatch):
    """`kill PID` on a background run: it saves, says why it stopped, and resumes later."""
    import os
    import signal

    from stylebox.training import loop
    from stylebox.training.loop import train
    vgg = random_vgg(["relu1_1", "relu1_2", "relu2_1"])
    calls = {"n": 0}
    plain = vgg.forward

    def forward(x, upto=None):  # calls: 2 style targets, then 2 per step: 7 is in step 3
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return plain(x, upto)

    vgg.forward = forward
    # Three fast steps last milliseconds: here one clock tick, 12.3 ms from start to save.
    monkeypatch.setattr(loop, "time", TickingClock())
    cfg = TrainConfig.load(write_train_config(data, steps=50))
    before = signal.getsignal(signal.SIGTERM)
    summary = train(cfg, tmp_path / "run", vgg=vgg, progress=False)
    assert summary["stopped"] == "signal" and summary["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    state = torch.load(tmp_path / "run/last.pt", weights_only=False)
    assert state["step"] == 3
    training = state["card"]["training"]
    # Kept to the millisecond (rounded to 0.1 s, this run once recorded 0.0).
    assert training["steps_done"] == 3 and training["train_seconds"] == 0.012
    assert training["precision"] in ("fp32", "bf16 autocast") and training["machine"]
    summary = train(cfg.replace(steps=5), tmp_path / "run", progress=False)
    assert summary["step"] == 5 and summary["stopped"] == "done"
    again = torch.load(tmp_path / "run/last.pt", weights_only=False)["card"]["training"]
    assert again["train_seconds"] > training["train_seconds"]  # summed over sessions


def test_style_tables_train_at_a_larger_lr(data, tmp_path):
    from stylebox.training.loop import make_optimizer, run_settings

    cfg = TrainConfig.load(write_train_config(data, norm_lr_scale=10.0))
    gen = make_tiny_generator_for(cfg)
    opt = make_optimizer(gen, cfg)
    convs, tables = opt.param_groups
    names = {id(p): n for n, p in gen.named_parameters()}
    assert all(names[id(p)].endswith((".gamma", ".beta")) for p in tables["params"])
    assert not any(names[id(p)].endswith((".gamma", ".beta")) for p in convs["params"])
    assert len(convs["params"]) + len(tables["params"]) == len(list(gen.parameters()))
    assert tables["lr_scale"] == 10.0 and convs["lr_scale"] == 1.0
    assert run_settings(cfg).lr_at(0) == cfg.lr
    with pytest.raises(ConfigError):
        cfg.replace(norm_lr_scale=0)
    cool = cfg.replace(lr_schedule="cosine", lr_decay_from=cfg.steps - 1)
    assert run_settings(cool).lr_at(cfg.steps - 1) == cfg.lr
    assert run_settings(cool).lr_at(cfg.steps) == pytest.approx(cfg.lr / 10)
    with pytest.raises(ConfigError, match="lr_decay_from"):
        cfg.replace(lr_decay_from=cfg.steps)
    timed = cfg.replace(time_limit_min=2.0)
    assert run_settings(timed).budget_s == 0  # the limit only stops the run
    assert run_settings(timed.replace(fit_time_limit=True)).budget_s == pytest.approx(117.6)
    assert "lr_decay_from" in cool.card().training and "lr_decay_from" not in cfg.card().training


def make_tiny_generator_for(cfg: TrainConfig):
    from stylebox.model.checkpoint import build_generator

    return build_generator(cfg.card())


def test_resume_from_an_older_optimizer_layout_keeps_the_weights(data, tmp_path):
    from stylebox.model.checkpoint import save_checkpoint
    from stylebox.training.loop import train

    cfg = TrainConfig.load(write_train_config(data, steps=3))
    gen = make_tiny_generator_for(cfg)
    old_opt = torch.optim.Adam(gen.parameters(), lr=1e-3)  # one group, as before
    save_checkpoint(tmp_path / "run/last.pt", gen, cfg.card(), optimizer=old_opt.state_dict(),
                    step=2, config=cfg.to_dict())
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 3  # resumed at 2, one step more
    state = torch.load(tmp_path / "run/last.pt", weights_only=False)
    assert len(state["optimizer"]["param_groups"]) == 2
