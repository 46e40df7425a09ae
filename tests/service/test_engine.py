"""OrtEngine: the ONNX contract check, padding of tiny images, provider resolution."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from stylebox.model.card import CARD_KEY
from stylebox.service.backends import openvino_installed
from stylebox.service.backends.ort import OrtEngine, resolve_providers
from stylebox.service.engine import Engine, ModelLoadError
from tests.conftest import make_tiny_card, noise, session_feed


def _backends() -> list:
    out = [pytest.param(OrtEngine, id="onnxruntime")]
    if openvino_installed():
        from stylebox.service.backends.ov import OpenVinoEngine

        out.append(pytest.param(OpenVinoEngine, id="openvino"))
    return out


BACKENDS = _backends()


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request, tiny_onnx) -> Engine:
    """The tiny model on each engine class installed here (not conftest's ONNX Runtime one):
    the contract holds on every backend."""
    return request.param(tiny_onnx)


def _close(out: np.ndarray, ref: np.ndarray, engine: Engine) -> None:
    """Bit-equal on ONNX Runtime; within one grey level on another runtime's f32 kernels."""
    if isinstance(engine, OrtEngine):
        np.testing.assert_array_equal(out, ref)
    else:
        assert out.shape == ref.shape and out.dtype == ref.dtype
        assert np.abs(out.astype(int) - ref).max() <= 1


def test_engine_exposes_card(engine):
    assert engine.style_names == ["candy", "mosaic", "udnie"]
    assert engine.card.name == "stylebox-tiny"
    assert engine.min_side == engine.card.export["min_side"] == 8
    # What serves, as /model, /readyz and /metrics report it.
    assert engine.runtime["engine"] == engine.backend in ("onnxruntime", "openvino")
    assert engine.runtime["precision"] == engine.precision == "f32"  # no bf16 asked
    if isinstance(engine, OrtEngine):
        assert engine.providers[-1] == "CPUExecutionProvider"
    else:
        assert engine.providers[0].startswith("openvino:CPU")
        assert engine.runtime["hint"] == "latency" and engine.runtime["infer_requests"] == 2


def test_one_hot_matches_model_on_padded_tiny_image(engine, tiny_onnx):
    rgb = noise(3, 5, seed=0)
    w = np.array([0, 1, 0], dtype=np.float32)
    out = engine.stylize(rgb, w)
    assert out.shape == (3, 5, 3) and out.dtype == np.uint8
    padded = np.pad(rgb, ((0, 5), (0, 3), (0, 0)), mode="edge")
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    ref = sess.run(["stylized"], session_feed(sess, padded[None], w[None]))[0][0]
    _close(out, ref[:3, :5], engine)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 10_000), (10_000, 1), (8, 8), (9, 31)])
def test_any_size_works(engine, h, w):
    rgb = np.full((h, w, 3), 128, dtype=np.uint8)
    assert engine.stylize(rgb, np.array([1, 0, 0], np.float32)).shape == (h, w, 3)


def test_unpadded_input_matches_session(engine, tiny_onnx):
    rgb = noise(20, 24, seed=1)
    w = np.array([0.2, 0.3, 0.5], dtype=np.float32)
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    ref = sess.run(["stylized"], session_feed(sess, rgb[None], w[None]))[0][0]
    _close(engine.stylize(rgb, w), ref, engine)
    # Non-contiguous views are accepted (one contiguous copy is made).
    _close(engine.stylize(rgb[:, ::-1][:, ::-1], w), ref, engine)


def test_stylize_rejects_wrong_arrays(engine):
    with pytest.raises(ValueError):
        engine.stylize(np.zeros((4, 4), np.uint8), np.ones(3, np.float32) / 3)
    with pytest.raises(ValueError):
        engine.stylize(np.zeros((4, 4, 3), np.float32), np.ones(3, np.float32) / 3)
    with pytest.raises(ValueError):
        engine.stylize(np.zeros((4, 4, 3), np.uint8), np.ones(2, np.float32) / 2)


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_and_garbage_files(tmp_path, backend):
    with pytest.raises(ModelLoadError) as e:
        backend(tmp_path / "nope.onnx")
    assert "does not exist" in _one_line(e)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not a protobuf" * 10)
    with pytest.raises(ModelLoadError) as e:
        backend(bad)
    assert "not a loadable ONNX model" in _one_line(e)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_or_invalid_card(tiny_onnx, tmp_path, backend):
    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "nocard.onnx"))
    with pytest.raises(ModelLoadError) as e:
        backend(tmp_path / "nocard.onnx")
    assert "no model card" in _one_line(e)
    proto.metadata_props.add(key=CARD_KEY, value='{"name": "x", "version": "1"}')
    onnx.save(proto, str(tmp_path / "badcard.onnx"))
    with pytest.raises(ModelLoadError) as e:
        backend(tmp_path / "badcard.onnx")
    assert "invalid model card" in _one_line(e) and "styles" in str(e.value)


def _identity_model(path, in_name="image", in_type=TensorProto.UINT8, out_name="stylized",
                    second=("style_weights", TensorProto.FLOAT, ["b", 3])):
    inputs = [helper.make_tensor_value_info(in_name, in_type, ["b", "h", "w", 3])]
    if second:
        inputs.append(helper.make_tensor_value_info(*second))
    out = helper.make_tensor_value_info(out_name, in_type, ["b", "h", "w", 3])
    graph = helper.make_graph([helper.make_node("Identity", [in_name], [out_name])], "g",
                              inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key=CARD_KEY, value=make_tiny_card().to_json())
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kwargs,words", [
    ({"in_name": "x"}, "inputs are"),
    ({"out_name": "y"}, "outputs are"),
    ({"in_type": TensorProto.FLOAT}, "'image' is float32, expected uint8"),
    ({"second": ("style_weights", TensorProto.FLOAT, ["b", 5])}, "card lists 3 styles"),
    ({"second": ("style_weights", TensorProto.DOUBLE, ["b", 3])}, "is float64, expected"),
    ({"second": None}, "inputs are"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_contract_violations(tmp_path, kwargs, words, backend):
    path = _identity_model(tmp_path / "m.onnx", **kwargs)
    with pytest.raises(ModelLoadError) as e:
        backend(path)
    assert words in _one_line(e) and "m.onnx" in str(e.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_model_with_the_contract_loads(tmp_path, backend):
    engine = backend(_identity_model(tmp_path / "ok.onnx"))
    rgb = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)
    np.testing.assert_array_equal(engine.stylize(rgb, np.ones(3, np.float32) / 3), rgb)


def test_provider_resolution(caplog):
    caplog.set_level(logging.WARNING, logger="stylebox.engine")
    out = resolve_providers(["NoSuchExecutionProvider", "cpu", "CUDAExecutionProvider"])
    assert out[-1] == "CPUExecutionProvider" and out.count("CPUExecutionProvider") == 1
    assert "NoSuchExecutionProvider" not in out
    assert "NoSuchExecutionProvider" in caplog.text
    assert resolve_providers([]) == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert out == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_engine_with_unavailable_provider_falls_back_to_cpu(tiny_onnx):
    engine = OrtEngine(tiny_onnx, ["NoSuchExecutionProvider"], intra_op_threads=1)
    assert engine.providers == ["CPUExecutionProvider"]
