"""Training modes as entries, the cheaper perceptual step (coarse style layers, cached content
features) and the log's columns."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from stylebox.training import modes
from stylebox.training.config import ConfigError, TrainConfig
from stylebox.training.data import PhotoBank, list_photos
from stylebox.training.featcache import CacheError, ContentCache, stride
from stylebox.training.loop import open_log, train
from stylebox.training.losses import PerceptualLoss
from tests.conftest import make_train_data, random_vgg, write_train_config

LAYERS = ["relu1_1", "relu1_2", "relu2_1", "relu2_2"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_train_data(tmp_path)


def _log(out: Path) -> list[dict]:
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


# -- modes ----------------------------------------------------------------------------------

def test_each_mode_is_one_entry_whose_terms_are_the_log_columns():
    cfg = TrainConfig()
    assert cfg.mode is modes.PLAIN
    assert modes.PLAIN.log_fields() == ["step", "loss", "content", "style", "tv", "lr",
                                        "steps_per_s", "elapsed_s"]
    tcfg = cfg.replace(consistency_weight=1.0)
    assert tcfg.mode is modes.TEMPORAL  # any of its terms turns it on
    assert modes.TEMPORAL.log_fields()[5:8] == ["temporal", "temporal_feature", "consistency"]
    assert cfg.replace(distill_weight=9.0).mode is modes.PLAIN  # distillation needs teachers
    assert cfg.replace(teachers=["t.onnx"]).mode is modes.DISTILL
    with pytest.raises(ConfigError, match="temporal and distill modes do not combine"):
        cfg.replace(teachers=["t.onnx"], temporal_weight=1.0)
    with pytest.raises(ConfigError, match="consistency_weight must be >= 0"):
        cfg.replace(consistency_weight=-1.0)


def test_the_card_records_only_the_running_modes_keys():
    cfg = TrainConfig(styles=[{"name": "a", "path": "a.png"}])
    plain = cfg.card().training
    assert not {k for m in modes.MODES for k in m.config_keys()} & set(plain)
    temporal = cfg.replace(temporal_weight=10.0).card().training
    assert set(modes.TEMPORAL.config_keys()) - {"temporal_style_scale"} <= set(temporal)
    assert "temporal_style_scale" not in temporal  # only when set: old cards stay the same
    scaled = cfg.replace(temporal_weight=10.0, temporal_style_scale={"a": 3}).card().training
    assert scaled["temporal_style_scale"] == {"a": 3.0}
    assert not set(modes.DISTILL.config_keys()) & set(temporal)
    assert "coarse_style_layers" not in plain and "content_cache" not in plain
    coarse = cfg.replace(coarse_style_layers=["relu4_1"]).card().training
    assert coarse["coarse_style_layers"] == ["relu4_1"] and "bf16_gram" not in coarse
    assert cfg.replace(bf16_gram=True).card().training["bf16_gram"] is True


def test_temporal_run_logs_its_terms_and_the_consistency_term_counts(data, tmp_path):
    cfg = TrainConfig.load(write_train_config(data, steps=2), [
        "temporal_weight=1", "consistency_weight=1000"])
    vgg = random_vgg(cfg.content_layers + cfg.style_layers)
    train(cfg, tmp_path / "run", vgg=vgg, progress=False)
    rows = _log(tmp_path / "run")
    assert list(rows[0]) == modes.TEMPORAL.log_fields()
    r = rows[-1]
    assert float(r["consistency"]) > 0
    parts = float(r["content"]) + 2 * float(r["style"]) + float(r["temporal"])
    assert float(r["loss"]) == pytest.approx(parts + 1000 * float(r["consistency"]), rel=1e-3)


def test_consistency_is_zero_for_outputs_that_move_with_the_photo():
    from stylebox.training.temporal import Motion, consistency_loss

    theta = torch.tensor([[[1.0, 0.0, 0.1], [0.0, 1.0, -0.05]]])
    m = Motion(theta)
    o1 = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 32, 32), 5, 1, 2)
    assert consistency_loss(o1, m.warp(o1), m).item() == pytest.approx(0, abs=1e-10)
    assert consistency_loss(o1, o1.flip(-1), m).item() > 1e-3


def test_a_resumed_run_merges_an_older_logs_columns(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss,distill,lr\n1,2.0,,0.1\n")
    f, log = open_log(path, modes.TEMPORAL.log_fields(), fresh=False)
    log.writerow({"step": 2, "loss": 1.5, "temporal": 0.3, "lr": 0.1})
    f.close()
    rows = _log(tmp_path)
    assert list(rows[0])[:len(modes.TEMPORAL.log_fields())] == modes.TEMPORAL.log_fields()
    assert "distill" in rows[0] and rows[0]["loss"] == "2.0" and rows[1]["temporal"] == "0.3"


# -- coarse style layers -------------------------------------------------------------------

def test_coarse_style_layers_see_the_image_halved():
    vgg = random_vgg(LAYERS)
    loss = PerceptualLoss(vgg, ["relu1_2"], ["relu1_1", "relu2_1"], coarse_layers=["relu2_1"])
    x = torch.rand(2, 3, 32, 32)
    feats = loss.features(x)
    assert feats["relu1_1"].shape[-1] == 32 and feats["relu1_2"].shape[-1] == 32
    half = vgg(torch.nn.functional.avg_pool2d(x, 2), ["relu2_1"])["relu2_1"]
    assert feats["relu2_1"].shape[-1] == 8 and torch.equal(feats["relu2_1"], half)
    loss.set_style_targets([x[:1], x[1:]])  # targets on the same terms: zero loss on itself
    assert loss(x, x, torch.tensor([0, 1]))["style"].item() < 1e-6
    measured = PerceptualLoss.from_config(
        TrainConfig(coarse_style_layers=["relu4_1"]), random_vgg(["relu5_1"]), measure=True)
    assert measured.coarse == []  # the scores keep every layer at full resolution
    with pytest.raises(ConfigError, match="coarse_style_layers"):
        TrainConfig(coarse_style_layers=["relu2_2"])  # the content layer


def test_bf16_grams_sum_in_float32_and_keep_the_loss():
    from stylebox.training.losses import gram

    torch.manual_seed(0)
    f = torch.relu(torch.randn(2, 16, 96, 96))  # 9,216 products per entry
    exact, fast = gram(f.double()).float(), gram(f, bf16=True)
    assert fast.dtype == torch.float32
    assert ((fast - exact).abs() / exact.abs()).max() < 2e-2  # inputs and result rounded
    vgg = random_vgg(LAYERS)
    x = torch.rand(2, 3, 32, 32)
    plain = PerceptualLoss(vgg, ["relu1_2"], ["relu1_1", "relu2_1"])
    quick = PerceptualLoss(vgg, ["relu1_2"], ["relu1_1", "relu2_1"], bf16_gram=True)
    for loss in (plain, quick):
        loss.set_style_targets([x[1:], x[:1]])
    assert quick.targets["relu1_1"].dtype == torch.float32  # targets: float32 always
    a, b = plain(x, x, torch.tensor([0, 1]))["style"], quick(x, x, torch.tensor([0, 1]))["style"]
    assert abs(a.item() - b.item()) < 0.01 * a.item()
    assert not PerceptualLoss.from_config(TrainConfig(bf16_gram=True), random_vgg(["relu5_1"]),
                                          measure=True).bf16_gram


# -- cached content features ---------------------------------------------------------------

def _cache(data: Path, folder: Path, crop: int = 32, layers=("relu1_2",)):
    files = list_photos(data / "photos")
    vgg = random_vgg(LAYERS)
    return files, vgg, ContentCache.open(folder, files, crop, list(layers),
                                         str(data / "vgg.pth"), vgg=vgg)


def test_cached_features_are_the_crops_own_away_from_its_edge(data, tmp_path):
    files, vgg, cache = _cache(data, tmp_path / "cache", layers=("relu1_2", "relu2_2"))
    assert json.loads((tmp_path / "cache/manifest.json").read_text())["crop"] == 32
    bank = PhotoBank(files, 32)
    bank.align = stride("relu2_2")
    assert bank.align == 2 and stride("relu1_1") == 1 and stride("relu4_1") == 8
    photo, (picks, tops, lefts) = bank.draw(6, torch.Generator().manual_seed(0))
    assert all(t % 2 == 0 and left % 2 == 0 for t, left in zip(tops, lefts, strict=True))
    for i, top, left, crop in zip(picks, tops, lefts, photo, strict=True):
        want = bank.photos[i][:, top:top + 32, left:left + 32].float() / 255  # never mirrored
        assert torch.equal(crop, want)
    got = cache.crops(picks, tops, lefts, 32, torch.device("cpu"))
    with torch.no_grad():
        own = vgg(photo, ["relu1_2", "relu2_2"])
    assert got["relu1_2"].shape == own["relu1_2"].shape == (6, 64, 32, 32)
    assert got["relu2_2"].shape == own["relu2_2"].shape == (6, 128, 16, 16)
    inner = (got["relu1_2"] - own["relu1_2"])[..., 4:-4, 4:-4].abs().max()
    assert inner < 2e-3 * own["relu1_2"].abs().max()  # float16 storage; edges differ


def test_a_stale_cache_is_refused_with_the_reason(data, tmp_path):
    files, vgg, _ = _cache(data, tmp_path / "cache")
    vgg_file = str(data / "vgg.pth")
    with pytest.raises(CacheError, match="crop"):
        ContentCache.open(tmp_path / "cache", files, 48, ["relu1_2"], vgg_file)
    with pytest.raises(CacheError, match="layers"):
        ContentCache.open(tmp_path / "cache", files, 32, ["relu2_2"], vgg_file)
    st = os.stat(files[2])
    os.utime(files[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(CacheError, match="changed since"):
        ContentCache.open(tmp_path / "cache", files, 32, ["relu1_2"], vgg_file)
    with pytest.raises(CacheError, match="no content cache"):
        ContentCache.open(tmp_path / "none", files, 32, ["relu1_2"], vgg_file)


def test_training_with_the_cheaper_step_runs_and_resumes_exactly(data, tmp_path):
    """Cached content and coarse style layers in a real run; stopped and resumed it ends
    with the same weights as one run (the crops draw the same from the cache)."""
    over = [f'content_cache="{tmp_path / "cache"}"', 'coarse_style_layers=["relu2_1"]',
            "temporal_weight=1"]
    cfg = TrainConfig.load(write_train_config(data, steps=4), over)
    vgg = random_vgg(cfg.content_layers + cfg.style_layers)
    train(cfg, tmp_path / "one", vgg=vgg, progress=False)
    assert (tmp_path / "cache/manifest.json").is_file()
    train(cfg.replace(steps=2), tmp_path / "two", vgg=vgg, progress=False)
    train(cfg, tmp_path / "two", vgg=vgg, progress=False)
    a = torch.load(tmp_path / "one/last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "two/last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = _log(tmp_path / "one")
    assert len(rows) == 4 and all(float(r["content"]) > 0 for r in rows)
