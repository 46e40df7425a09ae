"""End to end: `stylebox train` -> `stylebox export` -> the service and `stylebox stylize`.

The style list is written once, in the training config, and must arrive unchanged in the
checkpoint, the ONNX card, `GET /styles` and the CLI.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from PIL import Image

from stylebox.cli import main
from stylebox.model.card import CARD_KEY, ModelCard
from tests.conftest import make_client, make_train_data, pixels, png, write_train_config


@pytest.fixture(scope="module")
def trained_onnx(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    cfg = write_train_config(make_train_data(root / "data"), steps=3)
    assert main(["train", "--config", str(cfg), "--out", str(root / "run"), "--no-progress"]) == 0
    path = root / "model.onnx"
    assert main(["export", str(root / "run/last.pt"), "-o", str(path), "--size", "32"]) == 0
    return path


def test_the_card_travels_from_config_to_onnx(trained_onnx):
    meta = {p.key: p.value for p in onnx.load(str(trained_onnx)).metadata_props}
    card = ModelCard.from_json(meta[CARD_KEY])
    assert card.style_names == ["stripes", "checker"]
    assert card.training["steps_done"] == 3 and card.training["image_size"] == 32
    assert card.export["exporter"] == "torchscript" and card.export["opset"] == 17
    assert card.export["parity"]["max_abs"] <= 2


def test_the_service_serves_the_trained_model(trained_onnx):
    with make_client(None, trained_onnx) as client:
        assert [s["name"] for s in client.get("/styles").json()["styles"]] == ["stripes",
                                                                                "checker"]
        assert client.get("/model").json()["training"]["steps_done"] == 3
        photo = png(29, 37, seed=0)
        r = client.post("/stylize", params={"style": "stripes:0.5,checker:0.5"},
                        files={"image": ("p.png", photo)})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert pixels(r.content).shape == (29, 37, 3)
        r = client.post("/stylize", params={"style": "candy"},
                        files={"image": ("p.png", photo)})
        assert r.status_code == 404 and "stripes" in r.json()["detail"]


def test_the_stylize_cli_uses_the_same_model(trained_onnx, tmp_path):
    src = tmp_path / "in.jpg"
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(src)
    out = tmp_path / "out.webp"
    assert main(["stylize", str(src), "-s", "checker", "-o", str(out),
                 "--model", str(trained_onnx)]) == 0
    assert Image.open(out).size == (30, 20) and Image.open(out).format == "WEBP"
