"""Settings: every field comes from its STYLEBOX_* variable."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from stylebox.service.settings import Settings

ENV = {
    "STYLEBOX_MODEL_PATH": ("/m/x.onnx", "model_path", "/m/x.onnx"),
    # Several models (tests/service/test_models.py checks their use).
    "STYLEBOX_EXTRA_MODELS": ("fast=/m/fast.onnx, hq = /m/hq.onnx", "extra_models",
                              ["fast=/m/fast.onnx", "hq=/m/hq.onnx"]),
    "STYLEBOX_LIVE_MODEL": ("Fast", "live_model", "fast"),
    "STYLEBOX_PROVIDERS": ("CUDAExecutionProvider, CPUExecutionProvider", "providers",
                           ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    "STYLEBOX_HOST": ("127.0.0.1", "host", "127.0.0.1"),
    "STYLEBOX_PORT": ("9001", "port", 9001),
    "STYLEBOX_MAX_UPLOAD_BYTES": ("12345", "max_upload_bytes", 12345),
    "STYLEBOX_MAX_PIXELS": ("1000000", "max_pixels", 1_000_000),
    "STYLEBOX_MAX_INFERENCE_PIXELS": ("250000", "max_inference_pixels", 250_000),
    "STYLEBOX_INTRA_OP_THREADS": ("3", "intra_op_threads", 3),
    "STYLEBOX_MAX_CONCURRENCY": ("5", "max_concurrency", 5),
    "STYLEBOX_DEFAULT_FORMAT": ("JPG", "default_format", "jpeg"),
    # Inference speed (tests/service/test_session_options.py checks how the engine uses them).
    "STYLEBOX_GRAPH_OPTIMIZATION": ("extended", "graph_optimization", "extended"),
    "STYLEBOX_INTER_OP_THREADS": ("2", "inter_op_threads", 2),
    "STYLEBOX_CPU_MEM_ARENA": ("false", "cpu_mem_arena", False),
    "STYLEBOX_INTRA_OP_SPINNING": ("1", "intra_op_spinning", True),
    "STYLEBOX_OPTIMIZED_MODEL_DIR": ("/cache/ort", "optimized_model_dir", "/cache/ort"),
    "STYLEBOX_IO_BINDING": ("off", "io_binding", "off"),
    "STYLEBOX_WARMUP_SIZES": ("512,1920X1080", "warmup_sizes", ["512", "1920x1080"]),
    "STYLEBOX_ALLOW_ADMIN_WITHOUT_KEY": ("true", "allow_admin_without_key", True),
    # Video files (tests/service/test_video_jobs.py checks their use).
    "STYLEBOX_VIDEO_DIR": ("/srv/videos", "video_dir", "/srv/videos"),
    "STYLEBOX_VIDEO_MAX_UPLOAD_BYTES": ("1000", "video_max_upload_bytes", 1000),
    "STYLEBOX_VIDEO_MAX_DURATION_S": ("60.5", "video_max_duration_s", 60.5),
    "STYLEBOX_VIDEO_MAX_FRAMES": ("100", "video_max_frames", 100),
    "STYLEBOX_VIDEO_MAX_PIXELS": ("307200", "video_max_pixels", 307200),
    "STYLEBOX_VIDEO_UPLOAD_TIMEOUT_S": ("30", "video_upload_timeout_s", 30.0),
    "STYLEBOX_VIDEO_MAX_QUEUE": ("0", "video_max_queue", 0),
    "STYLEBOX_VIDEO_WORKERS": ("2", "video_workers", 2),
    "STYLEBOX_VIDEO_RESULT_TTL_S": ("60", "video_result_ttl_s", 60.0),
    "STYLEBOX_VIDEO_HEARTBEAT_S": ("0.5", "video_heartbeat_s", 0.5),
    "STYLEBOX_VIDEO_MOMENTUM": ("0.8", "video_momentum", 0.8),
    # Trainer jobs and the model file (tests/service/test_trainer.py checks their use).
    "STYLEBOX_MODEL_SEED": ("/seed/m.onnx", "model_seed", "/seed/m.onnx"),
    "STYLEBOX_MODEL_WATCH_S": ("0.5", "model_watch_s", 0.5),
    "STYLEBOX_TRAINER_MAX_QUEUE": ("2", "trainer_max_queue", 2),
    "STYLEBOX_TRAINER_PAINTING_MAX_BYTES": ("1000", "trainer_painting_max_bytes", 1000),
    "STYLEBOX_TRAINER_PAINTING_MAX_PIXELS": ("4000", "trainer_painting_max_pixels", 4000),
    "STYLEBOX_TRAINER_MAX_STYLES": ("12", "trainer_max_styles", 12),
    "STYLEBOX_TRAINER_STYLE_SECONDS": ("60", "trainer_style_seconds", 60.0),
    "STYLEBOX_TRAINER_OPTIMIZE_MAX_SIDE": ("768", "trainer_optimize_max_side", 768),
    "STYLEBOX_TRAINER_OPTIMIZE_MAX_SECONDS": ("300", "trainer_optimize_max_seconds", 300.0),
    # Hardening (tests/service/test_auth.py, test_hardening_*.py, test_metrics.py check their use).
    "STYLEBOX_MAX_QUEUE": ("3", "max_queue", 3),
    "STYLEBOX_REQUEST_TIMEOUT_S": ("12.5", "request_timeout_s", 12.5),
    "STYLEBOX_RETRY_AFTER_S": ("4", "retry_after_s", 4),
    "STYLEBOX_API_KEY": ("k3y", "api_key", SecretStr("k3y")),
    "STYLEBOX_CORS_ORIGINS": ("https://a.example, https://b.example", "cors_origins",
                              ["https://a.example", "https://b.example"]),
    "STYLEBOX_METRICS_PUBLIC": ("false", "metrics_public", False),
    "STYLEBOX_DRAIN_S": ("0.5", "drain_s", 0.5),
    "STYLEBOX_MAX_LIVE_SESSIONS": ("0", "max_live_sessions", 0),
    "STYLEBOX_LIVE_MAX_FRAME_BYTES": ("100000", "live_max_frame_bytes", 100_000),
    "STYLEBOX_LIVE_MAX_FRAME_PIXELS": ("307200", "live_max_frame_pixels", 307_200),
    "STYLEBOX_LIVE_IDLE_TIMEOUT_S": ("5", "live_idle_timeout_s", 5.0),
    "STYLEBOX_LOG_FORMAT": ("json", "log_format", "json"),
    # TensorRT EP (tests/deploy/test_deploy.py checks the provider options they make).
    "STYLEBOX_TRT_CACHE_DIR": ("/cache/trt", "trt_cache_dir", "/cache/trt"),
    # Large images (service/tiling.py).
    "STYLEBOX_LARGE_IMAGES": ("downscale", "large_images", "downscale"),
    "STYLEBOX_TILE_SIZE": ("512", "tile_size", 512),
    "STYLEBOX_TILE_MARGIN": ("64", "tile_margin", 64),
    "STYLEBOX_TILE_STATS_PIXELS": ("250000", "tile_stats_pixels", 250_000),
    # Engine and precision (tests/service/test_backends.py checks how they are resolved).
    "STYLEBOX_ENGINE": ("OpenVINO", "engine", "openvino"),
    "STYLEBOX_PRECISION": ("BF16", "precision", "bf16"),
    "STYLEBOX_OV_HINT": ("throughput", "ov_hint", "throughput"),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)


def test_defaults():
    s = Settings()
    assert s.model_path == "models/stylebox-a0.25.onnx"
    assert s.providers == ["CPUExecutionProvider"]
    assert (s.host, s.port) == ("127.0.0.1", 8000)  # the container images set 0.0.0.0
    assert s.max_upload_bytes == 20 * 1024 * 1024
    assert s.max_pixels == 40_000_000
    assert s.max_inference_pixels >= 3840 * 2160
    assert (s.intra_op_threads, s.max_concurrency, s.default_format) == (0, 2, "png")


def test_every_field_reads_its_env_var(monkeypatch):
    for var, (value, _, _) in ENV.items():
        monkeypatch.setenv(var, value)
    s = Settings()
    for _, field, expected in ENV.values():
        assert getattr(s, field) == expected, field
    assert set(Settings.model_fields) == {field for _, field, _ in ENV.values()}


def test_providers_as_json_list(monkeypatch):
    monkeypatch.setenv("STYLEBOX_PROVIDERS", '["CPUExecutionProvider"]')
    assert Settings().providers == ["CPUExecutionProvider"]


def test_init_overrides_env(monkeypatch):
    monkeypatch.setenv("STYLEBOX_PORT", "9001")
    assert Settings(port=1234).port == 1234


@pytest.mark.parametrize("var,value", [("STYLEBOX_PORT", "http"), ("STYLEBOX_PORT", "70000"),
                                       ("STYLEBOX_MAX_CONCURRENCY", "0"),
                                       ("STYLEBOX_DEFAULT_FORMAT", "gif"),
                                       ("STYLEBOX_MAX_PIXELS", "-1")])
def test_bad_values_are_rejected(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        Settings()


def test_settings_doc_is_generated_from_the_fields():
    from stylebox.service.settings import settings_markdown
    from tests.conftest import ROOT

    doc = ROOT / "docs" / "settings.md"
    assert doc.read_text() == settings_markdown(), \
        "regenerate: python -m stylebox.service.settings > docs/settings.md"
    assert all(f.description for f in Settings.model_fields.values())


def test_a_replaced_setting_stops_start_up_with_its_replacement(monkeypatch):
    monkeypatch.setenv("STYLEBOX_TRT_FP16", "true")  # now STYLEBOX_PRECISION=f16
    with pytest.raises(ValidationError, match="STYLEBOX_PRECISION=f16"):
        Settings()


def test_command_lines_offer_the_settings_choices(capsys):
    from stylebox.service.cli import serve_main
    from stylebox.service.settings import EngineName, Precision, choices

    with pytest.raises(SystemExit):
        serve_main(["--help"])
    out = capsys.readouterr().out
    for kind in (EngineName, Precision):  # the Literal the settings validate with
        assert "{" + ",".join(choices(kind)) + "}" in out
    assert Settings.model_fields["precision"].annotation == Precision
