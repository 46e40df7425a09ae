"""The fast CPU path of training: bf16 autocast where the CPU has it, channels_last, the
content reference cut at the content layer, and Grams that stay fp32 under autocast."""

from __future__ import annotations

import pytest
import torch

from stylebox.training import accel
from stylebox.training.config import ConfigError, TrainConfig
from stylebox.training.losses import PerceptualLoss, gram
from tests.conftest import make_tiny_generator, random_vgg

CPU = torch.device("cpu")


def _loss_and_grads(amp: bool, channels_last: bool = False):
    """One training step's loss and generator gradients from fixed weights and data."""
    gen = make_tiny_generator(n_styles=2).train()
    vgg = random_vgg(["relu1_1", "relu1_2", "relu2_1"], seed=1)
    loss_fn = PerceptualLoss(vgg, ["relu1_2"], ["relu1_1", "relu2_1"])
    g = torch.Generator().manual_seed(0)
    loss_fn.set_style_targets([torch.rand(1, 3, 40, 48, generator=g) ** 2,
                               torch.rand(1, 3, 48, 40, generator=g)])
    photo = torch.rand(4, 3, 32, 32, generator=g)  # (B, 3, H, W)
    idx = torch.tensor([0, 1, 1, 0])
    w = torch.nn.functional.one_hot(idx, 2).float()
    if channels_last:
        gen, photo = gen.to(memory_format=torch.channels_last), photo.contiguous(
            memory_format=torch.channels_last)
        loss_fn.vgg.to(memory_format=torch.channels_last)
    with accel.autocast(CPU, amp):
        parts = loss_fn(gen(photo, w), photo, idx)
    parts["loss"].backward()
    grads = torch.cat([p.grad.flatten() for p in gen.parameters() if p.grad is not None])
    return parts, grads


def test_bf16_cpu_step_matches_fp32_step():
    ref, g_ref = _loss_and_grads(amp=False)
    bf, g_bf = _loss_and_grads(amp=True, channels_last=True)
    assert bf["loss"].dtype == torch.float32  # the loss itself is accumulated in fp32
    for name in ("loss", "content", "style"):
        a, b = ref[name].item(), bf[name].item()
        assert abs(a - b) <= 0.03 * abs(a), f"{name}: fp32 {a:.5g} vs bf16 {b:.5g}"
    cos = torch.nn.functional.cosine_similarity(g_ref, g_bf, dim=0).item()
    assert cos > 0.95, f"bf16 gradients point elsewhere (cosine {cos:.3f})"


def test_channels_last_changes_nothing_in_fp32():
    a, ga = _loss_and_grads(amp=False)
    b, gb = _loss_and_grads(amp=False, channels_last=True)
    assert torch.allclose(a["loss"], b["loss"], rtol=1e-4)
    # The same arithmetic in another summation order: oneDNN's NHWC kernels block the sums
    # differently on AVX2, AVX-512 and AMX CPUs, so small gradient elements move by float
    # noise (2e-4 of the gradient's norm on an AMX Xeon); a layout bug moves them by O(1).
    err = (ga - gb).abs()
    assert err.norm() <= 1e-3 * ga.norm() and err.max() <= 1e-3 * ga.abs().max()


def test_gram_stays_fp32_under_autocast():
    f = torch.randn(2, 8, 16, 16)
    with accel.autocast(CPU, True):
        g = gram(f.to(torch.bfloat16))
    assert g.dtype == torch.float32
    # only the bf16 input rounding remains (~0.4 %), not a bf16 matrix product on top
    exact = gram(f.to(torch.bfloat16).float())
    assert torch.allclose(g, exact, rtol=1e-5, atol=1e-6)


def test_content_reference_stops_at_the_content_layer():
    vgg = random_vgg(["relu1_1", "relu1_2", "relu2_1"], seed=2)
    x = torch.rand(1, 3, 24, 24)
    full = vgg(x)
    cut = vgg(x, ["relu1_2"])
    assert set(cut) == {"relu1_2"} and torch.equal(cut["relu1_2"], full["relu1_2"])
    calls = []
    hook = vgg.features[5].register_forward_hook(lambda *a: calls.append(1))  # conv2_1
    vgg(x, ["relu1_2"])
    hook.remove()
    assert calls == []  # nothing past relu1_2 ran


@pytest.mark.parametrize(("flags", "want"), [
    ({"avx2", "amx_bf16", "amx_tile"}, True),
    ({"avx2", "avx512f", "avx512_bf16"}, True),
    ({"avx2", "avx512f"}, False),  # oneDNN would emulate bf16 here: slower than fp32
    (set(), False),
])
def test_auto_amp_follows_the_cpus_bf16_support(monkeypatch, flags, want):
    monkeypatch.setattr(accel, "cpu_flags", lambda: frozenset(flags))
    assert accel.use_amp(CPU, "auto") is want
    assert accel.use_amp(CPU, "on") is True and accel.use_amp(CPU, "off") is False
    assert accel.use_amp(torch.device("cuda"), "auto") is True


@pytest.mark.parametrize(("value", "want"), [(True, "on"), (False, "off"), ("auto", "auto"),
                                             ("ON", "on"), ("false", "off")])
def test_amp_setting_spellings(value, want):
    assert TrainConfig(amp=value).amp == want


def test_bad_amp_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="amp must be one of"):
        TrainConfig(amp="maybe")


def test_train_cli_amp_flag_forces_the_precision(monkeypatch, tmp_path):
    from stylebox.training import cli

    seen = {}
    monkeypatch.setattr(cli, "train", lambda cfg, out, **kw: seen.setdefault("cfg", cfg) and {
        "stopped": "done", "step": 0, "checkpoint": str(out)})
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[styles]]\nname = "a"\npath = "a.jpg"\n')
    assert cli.main(["--config", str(cfg), "--out", str(tmp_path / "r"), "--no-amp"]) == 0
    assert seen["cfg"].amp == "off"


def test_train_bench_times_each_setting_and_writes_its_table(tmp_path, capsys):
    from stylebox.cli import main
    from tests.conftest import make_train_data, write_train_config

    data = make_train_data(tmp_path / "d")
    report = tmp_path / "training.md"
    report.write_text("# Training\n\nkept above\n")
    args = ["train-bench", "--config", str(write_train_config(data)), "--shapes", "32x2,48x1",
            "--amp", "off", "--channels-last", "on", "--channels-last", "off",
            "--full-reference", "--steps", "1", "--report", str(report)]
    assert main(args) == 0
    text = report.read_text()
    assert text.startswith("# Training\n\nkept above\n")
    rows = [line for line in text.splitlines() if line.startswith("| 32²") or
            line.startswith("| 48²")]
    assert len(rows) == 6  # 2 shapes x (2 layouts + the full-reference row)
    assert sum("relu5_1 (before)" in r for r in rows) == 2
    assert all(float(r.split("|")[7]) > 0 for r in rows)  # s/step
    assert main(args) == 0  # a rerun replaces the block, keeps the rest
    again = report.read_text()
    assert again.count("train-bench:begin") == 1 and "kept above" in again
    assert main(["train-bench", "--shapes", "12x", "--config",
                 str(write_train_config(data))]) == 2
    assert "CROPxBATCH" in capsys.readouterr().err
