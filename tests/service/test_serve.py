"""The service as deployed: a real uvicorn over HTTP, start-up failures, and no torch."""

from __future__ import annotations

import subprocess
import sys

import httpx

from stylebox.procs import ServeProcess, service_env
from tests.conftest import ROOT, pixels, png


def test_service_import_path_does_not_import_torch(tiny_onnx):
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "import stylebox.service.cli, stylebox.service.routers.stylize\n"
        "from stylebox.service.app import create_app\n"
        "from stylebox.service.settings import Settings\n"
        f"with TestClient(create_app(Settings(model_path={str(tiny_onnx)!r}))) as c:\n"
        "    assert c.get('/styles').status_code == 200\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=service_env(), capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_serve_with_missing_model_prints_one_line_and_exits_1(tmp_path):
    model = tmp_path / "absent.onnx"
    r = subprocess.run([sys.executable, "-m", "stylebox", "serve", "--port", "0"],
                       env=service_env({"STYLEBOX_MODEL_PATH": str(model)}),
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert str(model) in lines[0] and "stylebox train" in lines[0]
    assert f"stylebox export runs/a0.25/last.pt -o {model}" in lines[0]


def test_serve_with_broken_model_prints_one_line_and_exits_1(tmp_path):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"\x08\x07garbage" * 50)
    r = subprocess.run([sys.executable, "-m", "stylebox", "serve", "--model", str(model)],
                       env=service_env(), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1
    out = (r.stdout + r.stderr).strip()
    assert len(out.splitlines()) == 1 and "Traceback" not in out and str(model) in out


def test_real_uvicorn_over_http(tiny_onnx, tmp_path):
    server = ServeProcess(tiny_onnx, log=tmp_path / "serve.log", log_level="info")
    base = server.base
    try:
        server.wait_ready(60)
        styles = httpx.get(f"{base}/styles", timeout=10).json()["styles"]
        assert [s["name"] for s in styles] == ["candy", "mosaic", "udnie"]
        data = png(33, 47, seed=0)
        r = httpx.post(f"{base}/stylize", params={"style": "candy:0.5,udnie:0.5"},
                       files={"image": ("p.png", data, "image/png")}, timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert pixels(r.content).shape == (33, 47, 3)
        r = httpx.post(f"{base}/stylize?style=nope", content=data,
                       headers={"Content-Type": "image/png"}, timeout=30)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    finally:
        server.stop()
    output = server.output()
    assert base in output  # the URL is printed
    assert "POST /stylize 200" in output and "style=candy:0.5,udnie:0.5" in output
