"""Reading an .onnx file without a runtime: the card, external data, and files that are no
ONNX model at all, each refused in one line before a runtime's parser sees them."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from stylebox.model.card import CARD_KEY, ModelCard
from stylebox.model.onnxfile import NotOnnxError, check_external, read_onnx
from stylebox.service.backends.ort import OrtEngine
from stylebox.service.engine import ModelLoadError
from tests.conftest import host_engines, open_host_engine


def test_reads_the_card_as_the_runtimes_do(tiny_onnx):
    f = read_onnx(tiny_onnx)
    assert ModelCard.from_json(f.metadata[CARD_KEY]).style_names == ["candy", "mosaic", "udnie"]
    assert f.external == []
    proto = onnx.load(str(tiny_onnx))
    assert f.metadata == {p.key: p.value for p in proto.metadata_props}


@pytest.mark.parametrize("data,words", [
    (b"PK\x03\x04 a zip: what torch.save writes", "PyTorch checkpoint"),
    (b"definitely not a protobuf" * 10, "not protobuf"),
    (b"\x08\x08", "no ONNX graph"),
    (b"", "no ONNX graph"),
])
def test_files_that_are_no_onnx_model(tmp_path, data, words):
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(NotOnnxError, match=words):
        read_onnx(path)


def test_a_truncated_model_is_refused(tiny_onnx, tmp_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(tiny_onnx.read_bytes()[:-100])
    with pytest.raises(NotOnnxError, match="truncated"):
        read_onnx(path)


def _external(tiny_onnx, folder, location):
    """The tiny model with its weights in an external file at `location` (relative)."""
    proto = onnx.load(str(tiny_onnx))
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(folder / "m.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    proto = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(proto, str(folder / "m.onnx"))
    return folder / "m.onnx"


@pytest.mark.parametrize("kind", host_engines(("f32",)))
def test_external_data_outside_the_folder_stops_loading(tiny_onnx, tmp_path, kind):
    model = _external(tiny_onnx, tmp_path / "model", "../secret.bin")
    shutil.move(tmp_path / "model" / "w.bin", tmp_path / "secret.bin")
    assert read_onnx(model).external and all(
        loc == "../secret.bin" for loc in read_onnx(model).external)
    with pytest.raises(ModelLoadError) as e:
        open_host_engine(model, kind)
    assert "outside the model's folder" in str(e.value) and "\n" not in str(e.value)


def test_external_data_beside_the_model_serves(tiny_onnx, tmp_path):
    model = _external(tiny_onnx, tmp_path / "model", "w.bin")
    check_external(model, read_onnx(model))  # inside its folder: fine
    rgb = np.full((12, 16, 3), 90, np.uint8)
    assert OrtEngine(model).stylize(rgb, np.array([1, 0, 0], np.float32)).shape == rgb.shape


def test_a_card_that_is_not_json_stops_loading(tiny_onnx, tmp_path):
    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    proto.metadata_props.add(key=CARD_KEY, value="{not json")
    onnx.save(proto, str(tmp_path / "m.onnx"))
    with pytest.raises(ModelLoadError, match="not valid JSON") as e:
        OrtEngine(tmp_path / "m.onnx")
    assert "\n" not in str(e.value)
