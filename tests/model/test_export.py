"""ONNX export: dynamic sizes, the card in metadata, parity with PyTorch, loud failures."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from stylebox.model import export as export_mod
from stylebox.model.card import CARD_KEY, ModelCard
from stylebox.model.checkpoint import save_checkpoint
from stylebox.model.export import ExportError, export_onnx
from stylebox.model.network import UInt8Generator
from tests.conftest import make_tiny_card, make_tiny_generator, session_feed


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_card_travels_in_metadata(tiny_onnx):
    meta = _session(tiny_onnx).get_modelmeta().custom_metadata_map
    card = ModelCard.from_json(meta[CARD_KEY])
    assert card.style_names == ["candy", "mosaic", "udnie"]
    assert card.export["exporter"] == "torchscript" and card.export["opset"] == 17
    parity = card.export["parity"]
    assert parity["max_abs"] <= parity["tolerance"]["max_abs"]


def test_io_contract_is_uint8_hwc_with_dynamic_sizes(tiny_onnx):
    s = _session(tiny_onnx)
    image, weights, stats, use = s.get_inputs()
    assert (image.name, image.type) == ("image", "tensor(uint8)")
    assert (stats.name, stats.shape[1], use.name, use.shape[1]) == ("norm_stats", 416,
                                                                    "use_stats", 1)
    assert [o.name for o in s.get_outputs()] == ["stylized", "computed_stats"]
    assert image.shape[3] == 3 and all(isinstance(d, str) for d in image.shape[:3])
    assert (weights.name, weights.type, weights.shape[1]) == ("style_weights", "tensor(float)", 3)
    assert s.get_outputs()[0].type == "tensor(uint8)"


@pytest.mark.parametrize("h,w", [(8, 8), (45, 77), (130, 66)])
def test_onnx_matches_pytorch_for_sizes_and_blends(tiny_onnx, h, w):
    wrapper = UInt8Generator(make_tiny_generator()).eval()
    rng = np.random.default_rng(h)
    img = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    weights = np.array([[0, 0, 1], [0.25, 0.5, 0.25]], dtype=np.float32)
    sess = _session(tiny_onnx)
    out = sess.run(["stylized"], session_feed(sess, img, weights))[0]
    with torch.no_grad():
        ref = wrapper(torch.from_numpy(img), torch.from_numpy(weights)).numpy()
    assert out.shape == (2, h, w, 3)
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01


def test_export_fails_loudly_when_onnx_disagrees(tmp_path, monkeypatch):
    real = export_mod._export_graph

    def export_then_tamper(wrapper, path, *args):
        real(wrapper, path, *args)
        with torch.no_grad():  # PyTorch now differs from the written graph
            wrapper.generator.out_conv.bias.add_(0.5)

    monkeypatch.setattr(export_mod, "_export_graph", export_then_tamper)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="disagrees"):
        export_onnx(make_tiny_generator(), make_tiny_card(), out, export_size=32)
    assert not out.exists()


def test_style_count_mismatch_is_rejected(tmp_path):
    card = make_tiny_card(styles=[{"name": "a"}, {"name": "b"}])
    with pytest.raises(ExportError, match="styles"):
        export_onnx(make_tiny_generator(n_styles=3), card, tmp_path / "x.onnx", export_size=32)


def test_dynamo_exporter_also_passes_parity(tmp_path):
    card = export_onnx(make_tiny_generator(), make_tiny_card(), tmp_path / "d.onnx",
                       exporter="dynamo", opset=18, export_size=32)
    assert card.export["exporter"] == "dynamo"
    meta = _session(tmp_path / "d.onnx").get_modelmeta().custom_metadata_map
    assert ModelCard.from_json(meta[CARD_KEY]).export["opset"] == 18


def test_cli_exports_a_checkpoint(tmp_path, capsys):
    from stylebox.cli import main

    save_checkpoint(tmp_path / "last.pt", make_tiny_generator(), make_tiny_card())
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "last.pt"), "-o", str(out), "--size", "48",
                 "--version", "9.9", "--name", "tiny-ends"]) == 0
    assert "parity vs PyTorch" in capsys.readouterr().out
    card = ModelCard.from_json(_session(out).get_modelmeta().custom_metadata_map[CARD_KEY])
    assert card.version == "9.9" and card.export["export_size"] == 48
    assert card.name == "tiny-ends"


def test_export_records_the_checkpoint_where_the_model_will_be_served(tmp_path, capsys):
    """The card names the checkpoint relative to the model's folder, or to --ship-dir when
    the file is written elsewhere first; a record only this machine can resolve warns."""
    from stylebox.cli import main
    from stylebox.model import lineage

    ship = tmp_path / "models"
    (ship / "checkpoints").mkdir(parents=True)
    ckpt = ship / "checkpoints" / "m.pt"
    save_checkpoint(ckpt, make_tiny_generator(), make_tiny_card())
    beside, scratch = ship / "m.onnx", tmp_path / "scratch" / "m.onnx"
    scratch.parent.mkdir()
    assert main(["export", str(ckpt), "-o", str(beside), "--size", "32"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert lineage.read_model_card(beside).export["checkpoint"]["file"] == "checkpoints/m.pt"
    # Written to a scratch folder: the record is absolute, and the user is told why it matters.
    assert main(["export", str(ckpt), "-o", str(scratch), "--size", "32"]) == 0
    err = capsys.readouterr().err
    assert "absolute path" in err and "--ship-dir" in err
    assert lineage.read_model_card(scratch).export["checkpoint"]["file"] == str(ckpt.resolve())
    # With --ship-dir the scratch file, once moved into the folder, finds its checkpoint.
    assert main(["export", str(ckpt), "-o", str(scratch), "--size", "32",
                 "--ship-dir", str(ship)]) == 0
    assert "warning" not in capsys.readouterr().err
    scratch.replace(beside)
    assert lineage.checkpoint_of(beside) == ckpt.resolve()


def test_sample_from_carries_another_models_sample_photo(tmp_path, capsys):
    """A re-export after a style edit keeps the page's preview photo: --sample-from."""
    from PIL import Image

    from stylebox.cli import main

    save_checkpoint(tmp_path / "last.pt", make_tiny_generator(), make_tiny_card())
    Image.new("RGB", (40, 30), (200, 60, 20)).save(tmp_path / "photo.png")
    first, second, plain = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "c.onnx"
    ckpt = str(tmp_path / "last.pt")
    assert main(["export", ckpt, "-o", str(first), "--size", "32", "--sample-photo",
                 str(tmp_path / "photo.png")]) == 0
    assert main(["export", ckpt, "-o", str(second), "--size", "32", "--sample-from",
                 str(first)]) == 0
    assert f"sample photo for the page's previews: photo.png (from {first})" in (
        capsys.readouterr().out)

    def card(path):
        return ModelCard.from_json(_session(path).get_modelmeta().custom_metadata_map[CARD_KEY])

    assert card(second).export["sample"] == card(first).export["sample"]
    assert card(second).export["sample"]["file"] == "photo.png"
    assert main(["export", ckpt, "-o", str(plain), "--size", "32"]) == 0
    assert "no sample photo" in capsys.readouterr().out and "sample" not in card(plain).export
    # A model without a sample, a file that is no model: one line, exit 2, nothing written.
    for source, text in ((plain, "its card carries no sample photo"), (tmp_path / "last.pt",
                                                                       "not an ONNX model")):
        assert main(["export", ckpt, "-o", str(tmp_path / "x.onnx"), "--sample-from",
                     str(source)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"stylebox export: --sample-from {source}: ") and text in err
        assert "\n" not in err and not (tmp_path / "x.onnx").exists()


def test_stats_error_measures_what_the_normalisation_feels():
    import numpy as np

    from stylebox.model.export import STATS_MAX_REL, stats_error

    # one layer, 2 channels: means (0.0, 40.0), variances (4.0, 100.0); batch 1
    ref = np.array([[0.0, 40.0, 4.0, 100.0]], np.float32)
    near = ref + np.array([[2e-5, 4e-3, 4e-5, 1e-3]], np.float32)  # float32 summation noise
    # 4e-4 (the 40.0 mean is 0.004 off at std 10); |diff| / (|ref| + 1e-3) would give 2e-2
    assert stats_error(near, ref, [2]) < STATS_MAX_REL
    off_mean = ref + np.array([[0.1, 0, 0, 0]], np.float32)  # 0.05 std off
    assert abs(stats_error(off_mean, ref, [2]) - 0.05) < 1e-4
    off_var = ref * np.array([[1, 1, 1.01, 1]], np.float32)  # 1 % in a variance
    assert abs(stats_error(off_var, ref, [2]) - 0.01) < 1e-4


def test_export_and_engine_read_one_contract(monkeypatch, tmp_path):
    """Rename an input in model/contract.py alone: export writes it and the engine expects it."""
    from stylebox.model import contract
    from stylebox.service.backends.ort import OrtEngine
    from stylebox.service.engine import ModelLoadError

    monkeypatch.setattr(contract, "IMAGE", "photo")
    path = tmp_path / "renamed.onnx"
    card = export_onnx(make_tiny_generator(), make_tiny_card(), path, export_size=32)
    assert "photo" in card.export["inputs"] and "image" not in card.export["inputs"]
    engine = OrtEngine(path)  # the service's check reads the same definition
    rgb = np.full((12, 16, 3), 100, np.uint8)
    assert engine.stylize(rgb, engine.one_hot(0)).shape == rgb.shape
    monkeypatch.undo()  # a service that expects the old name refuses the file in one line
    with pytest.raises(ModelLoadError, match=r"inputs are \[.*'photo'.*\], expected"):
        OrtEngine(path)


def test_export_refuses_a_graph_that_breaks_the_contract(monkeypatch, tmp_path):
    from stylebox.model import contract

    real_ports, real_export = contract.ports, export_mod._export_graph

    def one_more_input(n_styles, stats_size=0):
        inputs, outputs = real_ports(n_styles, stats_size)
        return [*inputs, contract.Port("extra", "float32", ("batch", 1))], outputs

    def export_then_change_contract(*args):
        real_export(*args)  # the graph as written has the real ports ...
        monkeypatch.setattr(contract, "ports", one_more_input)  # ... the contract one more

    monkeypatch.setattr(export_mod, "_export_graph", export_then_change_contract)
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="breaks the model contract: inputs are"):
        export_onnx(make_tiny_generator(), make_tiny_card(), path, export_size=32)
    assert not path.exists()


@pytest.mark.parametrize("variant, radius", [({"blur": 3}, 39), ({"blur": 3, "up_blur": 3}, 42),
                                             ({"blur": 3, "up_blur": 5}, 45)])
def test_blurred_network_exports_and_serves_through_the_same_contract(tmp_path, variant,
                                                                     radius):
    """The anti-aliasing low-passes are fixed convolutions in the graph: the card records
    them (arch and the wider receptive radius) and the service needs no special case."""
    from stylebox.service.backends.ort import OrtEngine

    card = make_tiny_card()
    card.arch.update(variant)
    g = make_tiny_generator(**variant)
    path = tmp_path / "blur.onnx"
    export_onnx(g, card, path, export_size=32)
    engine = OrtEngine(path)
    assert {k: engine.card.arch[k] for k in variant} == variant
    assert engine.receptive_radius == radius
    export_onnx(make_tiny_generator(), make_tiny_card(), tmp_path / "plain.onnx", export_size=32)
    ops = [{n.op_type for n in onnx.load(p).graph.node} for p in (path, tmp_path / "plain.onnx")]
    assert ops[0] == ops[1]  # no operator the plain graph lacks: the low-passes are Convs
    x = np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    w = np.eye(3, dtype=np.float32)[1]
    with torch.no_grad():
        want = UInt8Generator(g)(torch.from_numpy(x)[None], torch.from_numpy(w)[None])[0]
    assert np.abs(engine.stylize(x, w).astype(int) - want.numpy()).max() <= 1
