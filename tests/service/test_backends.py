"""Engine and precision choice (service/backends), the start-up precision check
(service/precision.py) and OpenVINO serving: concurrency, tiling statistics, the HTTP API.

The host-dependent facts (is openvino installed, which precisions the CPU runs natively) are
the two functions `choose` asks; the rules are tested by setting them, so a CPU without bf16
(this one) checks the AMX rules too. Where a test needs real bf16 arithmetic it uses the
shipped model with every convolution rounded to bf16 (stylebox/precision.py `emulate`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from stylebox.service import backends
from stylebox.service.backends import choose, open_engine, openvino_installed
from stylebox.service.backends.ort import OrtEngine
from stylebox.service.engine import EngineConfigError
from stylebox.service.precision import MAX_MEAN, MAX_P999, compare
from stylebox.service.settings import Settings
from tests.conftest import ROOT, make_client, png

SHIPPED = ROOT / "models" / "stylebox-a0.25.onnx"
needs_ov = pytest.mark.skipif(not openvino_installed(), reason="openvino is not installed")


def _host(monkeypatch, *, ov: bool, native: set[str], cpu: str = "Test CPU") -> None:
    monkeypatch.setattr(backends, "openvino_installed", lambda: ov)
    monkeypatch.setattr(backends, "_native_precisions", lambda: (native, cpu))


def _settings(**kw) -> Settings:
    return Settings(model_path=str(SHIPPED), **kw)


AMX = {"f32", "bf16"}


@pytest.mark.parametrize("engine,precision,ov,native,providers,expected", [
    # auto: OpenVINO bf16 only where it is installed and the CPU runs bf16 natively
    ("auto", "auto", True, AMX, None, ("openvino", "bf16")),
    ("auto", "auto", True, {"f32"}, None, ("onnxruntime", "f32")),
    ("auto", "auto", False, AMX, None, ("onnxruntime", "f32")),
    ("auto", "f32", True, AMX, None, ("onnxruntime", "f32")),
    ("auto", "bf16", True, AMX, None, ("openvino", "bf16")),
    # GPU providers stay ONNX Runtime's, even on an AMX host
    ("auto", "auto", True, AMX, "CUDAExecutionProvider,CPUExecutionProvider",
     ("onnxruntime", "f32")),
    ("auto", "f16", True, AMX, "TensorrtExecutionProvider,CPUExecutionProvider",
     ("onnxruntime", "f16")),
    # forced engine, auto precision: the best it runs here
    ("openvino", "auto", True, AMX, None, ("openvino", "bf16")),
    ("openvino", "auto", True, {"f32"}, None, ("openvino", "f32")),
    ("openvino", "f32", True, AMX, None, ("openvino", "f32")),
    ("onnxruntime", "auto", True, AMX, None, ("onnxruntime", "f32")),
])
def test_choice(monkeypatch, engine, precision, ov, native, providers, expected):
    _host(monkeypatch, ov=ov, native=native)
    kw = {"providers": providers} if providers else {}
    assert choose(_settings(engine=engine, precision=precision, **kw)) == expected


@pytest.mark.parametrize("engine,precision,ov,native,words", [
    ("openvino", "auto", False, AMX, ["STYLEBOX_ENGINE=openvino", "not installed",
                                      "pip install 'stylebox[openvino]'"]),
    ("auto", "bf16", False, AMX, ["STYLEBOX_PRECISION=bf16", "not installed", "pip install"]),
    ("openvino", "bf16", True, {"f32"}, ["STYLEBOX_PRECISION=bf16", "AMX or AVX512_BF16",
                                         "Test CPU", "runs f32", "STYLEBOX_PRECISION=auto"]),
    ("auto", "bf16", True, {"f32"}, ["AMX or AVX512_BF16", "Test CPU"]),
    ("auto", "f16", True, AMX, ["STYLEBOX_PRECISION=f16", "AMX-FP16", "runs bf16, f32"]),
    ("onnxruntime", "bf16", True, AMX, ["runs on OpenVINO only", "STYLEBOX_ENGINE=openvino"]),
    ("onnxruntime", "f16", True, AMX, ["TensorRT", "STYLEBOX_ENGINE=openvino"]),
])
def test_impossible_choices_are_one_line_naming_the_fix(monkeypatch, engine, precision, ov,
                                                        native, words):
    _host(monkeypatch, ov=ov, native=native)
    with pytest.raises(EngineConfigError) as e:
        choose(_settings(engine=engine, precision=precision))
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_bad_values_are_rejected_by_the_settings(monkeypatch):
    monkeypatch.setenv("STYLEBOX_ENGINE", "tensorflow")
    with pytest.raises(ValueError, match="engine"):
        Settings()


def test_serve_stops_with_one_line(monkeypatch, capsys):
    from stylebox.cli import main

    _host(monkeypatch, ov=False, native={"f32"})
    assert main(["serve", "--model", str(SHIPPED), "--engine", "openvino"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("stylebox serve: STYLEBOX_ENGINE=openvino")


# -- the precision check ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference() -> OrtEngine:
    return OrtEngine(SHIPPED)


@pytest.fixture(scope="module", params=["conv", "all"])
def emulated_bf16(request, tmp_path_factory) -> OrtEngine:
    from stylebox.precision import emulate

    path = emulate(SHIPPED, tmp_path_factory.mktemp("bf16") / "bf16.onnx", "bf16",
                   request.param)
    return OrtEngine(path)


def test_bf16_rounding_of_the_shipped_model_is_within_the_bound(emulated_bf16, reference):
    """The documented bound against real bf16 arithmetic: every convolution's inputs,
    weights and outputs rounded to bf16 (and, scope "all", every other float tensor), on the
    check image, every style and the blend."""
    report = compare(emulated_bf16, reference)
    assert report["ok"] and report["cases"] == len(reference.style_names) + 1
    assert 0.05 < report["mean"] < MAX_MEAN / 2  # it moved, and by well under the bound
    assert report["p99_9"] < MAX_P999 / 2 and report["max"] >= report["p99_9"]
    assert report["image"].startswith("the card's sample photo")
    # ... and the same bf16 model, on a real photo at 512 px (bigger than the check image)
    photo = np.asarray(_photo(512))
    for i in range(len(reference.style_names)):
        d = np.abs(emulated_bf16.stylize(photo, reference.one_hot(i)).astype(int)
                   - reference.stylize(photo, reference.one_hot(i)))
        assert d.mean() < MAX_MEAN and np.percentile(d, 99.9) < MAX_P999


def _photo(side: int):
    from PIL import Image

    files = sorted((ROOT.parent / "shared/data/eval-photos").glob("kodak_*"))
    if not files:
        pytest.skip("../shared/data/eval-photos is not here")
    with Image.open(files[0]) as im:
        im = im.convert("RGB")
        im.thumbnail((side, side))
        return im


class Shifted(OrtEngine):
    """ONNX Runtime f32 with every output value moved by `shift` grey levels: a stand-in
    for a runtime whose low precision does not hold (the check must refuse it)."""

    shift = 3

    def stylize(self, rgb, weights):
        out = super().stylize(rgb, weights).astype(np.int16) + self.shift
        return np.clip(out, 0, 255).astype(np.uint8)


def test_compare_refuses_an_engine_beyond_the_bound(reference):
    report = compare(Shifted(SHIPPED), reference)
    assert not report["ok"] and report["mean"] > MAX_MEAN
    same = compare(reference, reference)
    assert same["ok"] and same["mean"] == same["max"] == 0


def _fake_low_precision(monkeypatch, engine_cls):
    """open_engine on an 'AMX host' whose bf16 engine is `engine_cls` on the shipped model."""
    _host(monkeypatch, ov=True, native=AMX)
    real_open = backends._open

    def fake_open(settings, name, precision):
        if name != "openvino":
            return real_open(settings, name, precision)
        engine = engine_cls(settings.model_path)
        engine.precision = precision
        return engine

    monkeypatch.setattr(backends, "_open", fake_open)


def test_open_engine_keeps_a_low_precision_within_the_bound(monkeypatch, tmp_path):
    from stylebox.precision import emulate

    bf16 = emulate(SHIPPED, tmp_path / "bf16.onnx")
    _fake_low_precision(monkeypatch, lambda _path: OrtEngine(bf16))
    engine = open_engine(_settings(warmup_sizes=["32"]))
    assert engine.precision == "bf16" and engine.precision_check["ok"]
    assert engine.warmup_ms.keys() == {"32x32"}  # warmed after the check, not before
    assert engine.runtime["precision_check"]["bound"] == f"mean <= {MAX_MEAN}, p99.9 <= 48"


def test_open_engine_falls_back_to_f32_when_auto_and_refuses_when_forced(monkeypatch, caplog):
    _fake_low_precision(monkeypatch, Shifted)
    engine = open_engine(_settings())  # precision=auto: serve f32 instead, say why
    assert (engine.backend, engine.precision) == ("onnxruntime", "f32")
    assert engine.precision_check["ok"] is False
    assert "serving ONNX Runtime f32 instead" in caplog.text
    with pytest.raises(EngineConfigError) as e:
        open_engine(_settings(precision="bf16"))
    msg = str(e.value)
    assert "\n" not in msg and "differs from f32 by mean 3.00" in msg
    assert "STYLEBOX_PRECISION=f32" in msg


# -- OpenVINO serving -------------------------------------------------------------------------

@needs_ov
def test_openvino_f32_matches_onnxruntime_on_the_shipped_model(reference):
    from stylebox.service.backends.ov import OpenVinoEngine

    ov = OpenVinoEngine(SHIPPED, "f32")
    report = compare(ov, reference)
    assert report["ok"] and report["mean"] < 0.01 and report["max"] <= 1
    # Tiling: the statistics in and out agree too (service/tiling.py relies on them).
    photo = np.asarray(_photo(256))
    w = reference.one_hot(2)
    out_ov, stats_ov = ov.stylize_stats(photo, w)
    out_ref, stats_ref = reference.stylize_stats(photo, w)
    np.testing.assert_allclose(stats_ov, stats_ref, rtol=1e-3, atol=1e-3)
    tile = photo[:96, :128]
    a, _ = ov.stylize_stats(tile, w, stats_ref)
    b, _ = reference.stylize_stats(tile, w, stats_ref)
    assert np.abs(a.astype(int) - b).max() <= 1


@needs_ov
def test_openvino_runs_requests_concurrently_and_correctly():
    from stylebox.service.backends.ov import OpenVinoEngine

    engine = OpenVinoEngine(SHIPPED, "f32", requests=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8) for i in range(8)]
    serial = [engine.stylize(img, engine.one_hot(i % 3)) for i, img in enumerate(images)]
    peak, running, lock = [0], [0], threading.Lock()
    real_run = engine._run

    def counted(feed, outputs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real_run(feed, outputs)
        finally:
            with lock:
                running[0] -= 1

    engine._run = counted
    with ThreadPoolExecutor(6) as pool:
        parallel = list(pool.map(lambda a: engine.stylize(a[1], engine.one_hot(a[0] % 3)),
                                 enumerate(images)))
    for s, p in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(s, p)  # no request saw another's buffers
    assert peak[0] >= 2 and real_run.idle == 2  # all requests back in the pool


@needs_ov
def test_the_service_on_openvino_reports_engine_and_precision(monkeypatch):
    with make_client(None, SHIPPED, engine="openvino", precision="f32") as client:
        runtime = client.get("/model").json()["runtime"]
        assert (runtime["engine"], runtime["precision"]) == ("openvino", "f32")
        assert runtime["hint"] == "latency" and runtime["infer_requests"] == 2
        ready = client.get("/readyz").json()
        assert (ready["engine"], ready["precision"]) == ("openvino", "f32")
        r = client.post("/stylize?style=candy&format=png",
                        files={"image": ("p.png", png(48, 64, seed=1), "image/png")})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        metrics = client.get("/metrics").text
        assert 'stylebox_engine_info{engine="openvino",model="stylebox-a0.25",' \
               'precision="f32"} 1.0' in metrics


@needs_ov
def test_a_signal_after_openvino_engines_come_and_go_is_handled():
    """Regression: with a Core per engine, OpenVINO unloaded its CPU plugin when the engines
    went, leaving the main thread's alternate signal stack in unmapped memory; the training
    test's SIGTERM then crashed pytest (rc 139). Exactly that sequence, in a child pytest."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/service/test_engine.py",
         "tests/training/test_loop.py::test_sigterm_stops_at_the_next_step_with_a_checkpoint",
         "-k", "contract_violations and openvino or sigterm"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "7 passed" in r.stdout


def test_precision_command_tables_every_style_and_writes_the_crop(tiny_onnx, tmp_path, capsys):
    from PIL import Image

    from stylebox.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(
            photos / f"p{i}.png")
    crop = tmp_path / "crop.png"
    assert main(["precision", "--model", str(tiny_onnx), "--photos", str(photos),
                 "--emulate", "bf16", "--scope", "all", "--size", "48", "--crop",
                 str(crop)]) == 0
    out = capsys.readouterr().out
    assert "every float tensor rounded to bf16 vs ONNX Runtime f32; 2 photos" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["candy", "mosaic", "udnie", "**all**"]
    assert "start-up bound (mean <= 2.0, p99.9 <= 48):" in out
    with Image.open(crop) as im:  # f32 | test | diff, each 2x, with two 4 px gutters
        side = 34  # the resized photos are 48x34; the crop is at most their short side
        assert im.size == (2 * (3 * side + 8), 2 * side)
    assert main(["precision", "--model", str(tiny_onnx), "--photos", str(tmp_path / "none"),
                 "--emulate", "bf16"]) == 2
