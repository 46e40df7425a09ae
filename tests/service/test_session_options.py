"""Session options: settings -> SessionConfig -> OrtEngine; each option keeps the output right."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from stylebox.service.backends.ort import OrtEngine
from stylebox.service.session_options import (
    CPU,
    CUDA,
    SessionConfig,
    optimized_path,
    use_io_binding,
)
from stylebox.service.settings import Settings, parse_size
from stylebox.service.state import state_of
from tests.conftest import make_client, noise, png, session_feed

W = np.array([0.2, 0.5, 0.3], np.float32)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return noise(37, 50, seed=3)  # (H, W, 3)


@pytest.fixture(scope="module")
def reference(tiny_onnx, rgb) -> np.ndarray:
    """The plain, unoptimised session's answer."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(tiny_onnx), opts, providers=[CPU])
    return sess.run(["stylized"], session_feed(sess, rgb[None], W[None]))[0][0]


def test_settings_map_to_session_config(monkeypatch, tmp_path):
    env = {"STYLEBOX_GRAPH_OPTIMIZATION": "basic", "STYLEBOX_INTER_OP_THREADS": "2",
           "STYLEBOX_CPU_MEM_ARENA": "false", "STYLEBOX_INTRA_OP_SPINNING": "true",
           "STYLEBOX_OPTIMIZED_MODEL_DIR": str(tmp_path),
           "STYLEBOX_IO_BINDING": "on", "STYLEBOX_WARMUP_SIZES": " 512, 1920x1080 ,"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings()
    cfg = SessionConfig.from_settings(settings)
    assert cfg == SessionConfig("basic", 2, False, True, str(tmp_path), "on")
    assert settings.warmup_shapes == ((512, 512), (1080, 1920))
    assert Settings(_env_file=None, warmup_sizes=[]).warmup_shapes == ()


@pytest.mark.parametrize("field,value", [("warmup_sizes", "12xq"), ("warmup_sizes", "0"),
                                         ("graph_optimization", "max"), ("io_binding", "yes"),
                                         ("inter_op_threads", "-1")])
def test_bad_settings_are_rejected(monkeypatch, field, value):
    monkeypatch.setenv(f"STYLEBOX_{field.upper()}", value)
    with pytest.raises(ValidationError):
        Settings()


def test_parse_size():
    assert parse_size("64") == (64, 64)
    assert parse_size("1920x1080") == (1080, 1920)  # W x H in, (H, W) out
    with pytest.raises(ValueError):
        parse_size("0x5")


@pytest.mark.parametrize("cfg", [
    SessionConfig(),
    SessionConfig(graph_optimization="disable"),
    SessionConfig(graph_optimization="basic"),
    SessionConfig(graph_optimization="extended"),
    SessionConfig(cpu_mem_arena=False, inter_op_threads=1),
    SessionConfig(intra_op_spinning=True),
    SessionConfig(io_binding="on"),
], ids=["defaults", "disable", "basic", "extended", "no-arena", "spinning", "io-binding"])
def test_every_option_gives_the_reference_image(tiny_onnx, rgb, reference, cfg):
    out = OrtEngine(tiny_onnx, options=cfg, intra_op_threads=1).stylize(rgb, W)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    # Fused kernels may round a few values differently, never by more than one grey level.
    diff = np.abs(out.astype(np.int16) - reference)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_io_binding_is_bit_identical_to_run(tiny_onnx, rgb):
    plain = OrtEngine(tiny_onnx, options=SessionConfig(io_binding="off")).stylize(rgb, W)
    bound = OrtEngine(tiny_onnx, options=SessionConfig(io_binding="on")).stylize(rgb, W)
    np.testing.assert_array_equal(plain, bound)
    tiny = np.full((3, 5, 3), 200, np.uint8)  # the engine's padding path, bound
    assert OrtEngine(tiny_onnx, options=SessionConfig(io_binding="on")).stylize(tiny, W).shape \
        == (3, 5, 3)


def test_io_binding_auto_means_cuda_only():
    auto = SessionConfig()
    assert use_io_binding(auto, [CUDA, CPU]) and not use_io_binding(auto, [CPU])
    assert use_io_binding(SessionConfig(io_binding="on"), [CPU])
    assert not use_io_binding(SessionConfig(io_binding="off"), [CUDA, CPU])


def test_optimized_model_cache_is_written_then_reused(tiny_onnx, tmp_path, rgb, reference):
    cfg = SessionConfig(optimized_model_dir=str(tmp_path / "cache"))
    first = OrtEngine(tiny_onnx, options=cfg)
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0] == optimized_path(tiny_onnx, cfg, [CPU])
    stamp = files[0].stat().st_mtime_ns
    second = OrtEngine(tiny_onnx, options=cfg)  # loads the cached graph, rewrites nothing
    assert files[0].stat().st_mtime_ns == stamp
    assert second.card == first.card  # the card survives ORT's re-serialisation
    np.testing.assert_array_equal(second.stylize(rgb, W), first.stylize(rgb, W))
    assert np.abs(second.stylize(rgb, W).astype(np.int16) - reference).max() <= 1


def test_damaged_cache_file_is_replaced(tiny_onnx, tmp_path, rgb, reference):
    cfg = SessionConfig(optimized_model_dir=str(tmp_path))
    cached = optimized_path(tiny_onnx, cfg, [CPU])
    cached.write_bytes(b"not a model")
    engine = OrtEngine(tiny_onnx, options=cfg)
    assert np.abs(engine.stylize(rgb, W).astype(np.int16) - reference).max() <= 1
    assert cached.stat().st_size > 1000  # rewritten with the real optimised graph


def test_cache_key_and_scope(tiny_onnx, tmp_path):
    cfg = SessionConfig(optimized_model_dir=str(tmp_path))
    basic = SessionConfig(optimized_model_dir=str(tmp_path), graph_optimization="basic")
    assert optimized_path(tiny_onnx, cfg, [CPU]) != optimized_path(tiny_onnx, basic, [CPU])
    assert optimized_path(tiny_onnx, cfg, [CUDA, CPU]) is None  # EP-specific graphs: no cache
    assert optimized_path(tiny_onnx, SessionConfig(), [CPU]) is None  # off by default


def test_warmup_runs_each_size(tiny_onnx):
    engine = OrtEngine(tiny_onnx)
    assert engine.warmup_ms == {}  # only when asked: open_engine warms the engine that serves
    assert engine.warmup(((16, 16), (20, 24))) is engine.warmup_ms
    assert set(engine.warmup_ms) == {"16x16", "24x20"}
    assert all(ms > 0 for ms in engine.warmup_ms.values())


def test_service_uses_the_session_settings(tiny_onnx, tmp_path):
    with make_client(None, tiny_onnx, graph_optimization="basic",
                     optimized_model_dir=str(tmp_path), warmup_sizes=["32x24"]) as client:
        assert state_of(client.app).engine.warmup_ms.keys() == {"32x24"}
        r = client.post("/stylize?style=candy&format=png", content=png(24, 32, seed=0),
                        headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and r.headers["X-Stylebox-Inference-Size"] == "32x24"
    assert len(list(tmp_path.iterdir())) == 1  # the optimised graph was cached


def test_unwritable_cache_dir_still_serves(tiny_onnx, tmp_path, rgb, reference):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    engine = OrtEngine(tiny_onnx, options=SessionConfig(optimized_model_dir=str(blocker / "sub")))
    assert np.abs(engine.stylize(rgb, W).astype(np.int16) - reference).max() <= 1
