"""Every `stylebox` command reports a user error the same way: one line on stderr,
`stylebox COMMAND: message`, no traceback, and the error's exit code (2 for a bad argument,
file or setting; 1 for a model or export that fails to load or to verify)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stylebox.cli import main
from stylebox.errors import UserError
from tests.conftest import make_tiny_card, make_tiny_generator, make_train_data, write_train_config


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Good inputs (photos, a config, a checkpoint) and bad ones (junk, a malformed checkpoint)."""
    import torch

    from stylebox.model.checkpoint import save_checkpoint

    root = make_train_data(tmp_path_factory.mktemp("errors"))
    save_checkpoint(root / "good.pt", make_tiny_generator(), make_tiny_card())
    (root / "junk.pt").write_bytes(b"\x08not a checkpoint at all" * 8)
    torch.save({"model": {}, "card": {"name": "x"}}, root / "bad-card.pt")
    torch.save({"model": {}, "card": make_tiny_card().to_dict()}, root / "no-weights.pt")
    return {"root": root, "config": write_train_config(root), "good": root / "good.pt",
            "junk": root / "junk.pt", "bad_card": root / "bad-card.pt",
            "no_weights": root / "no-weights.pt", "photo": root / "styles/stripes.png",
            "missing": root / "absent" / "nothing.pt"}


Argv = Callable[[dict[str, Path], Path, Path], list[str]]

# (case, argv from (files, tiny_onnx, tmp_path), exit code, text the one line must hold)
CASES: list[tuple[str, Argv, int, str]] = [
    ("export-not-a-checkpoint",
     lambda f, m, t: ["export", str(f["junk"]), "-o", str(t / "o.onnx")], 2,
     "not a stylebox checkpoint"),
    ("export-missing-file",
     lambda f, m, t: ["export", str(f["missing"]), "-o", str(t / "o.onnx")], 2, "not found"),
    ("export-malformed-card",
     lambda f, m, t: ["export", str(f["bad_card"]), "-o", str(t / "o.onnx")], 2,
     "model card lacks"),
    ("export-weights-do-not-fit",
     lambda f, m, t: ["export", str(f["no_weights"]), "-o", str(t / "o.onnx")], 2,
     "do not fit its card"),
    ("serve-missing-model",
     lambda f, m, t: ["serve", "--model", str(t / "none.onnx")], 1, "stylebox export"),
    ("serve-model-is-a-folder",
     lambda f, m, t: ["serve", "--model", str(t)], 1, "is a folder; give the .onnx file"),
    ("stylize-missing-input",
     lambda f, m, t: ["stylize", str(t / "missing.png"), "-s", "candy", "-o", str(t / "o.png"),
                      "--model", str(m)], 2, "missing.png"),
    ("stylize-unknown-style",
     lambda f, m, t: ["stylize", str(f["photo"]), "-s", "starry", "-o", str(t / "o.png"),
                      "--model", str(m)], 2, "unknown style 'starry'"),
    ("eval-missing-photo-folder",
     lambda f, m, t: ["eval", "--model", str(m), "--photos", str(t / "none"), "--config",
                      str(f["config"]), "--styles", "candy", "--style-image",
                      f"candy={f['photo']}", "--engine", "onnxruntime", "--out", str(t / "e")],
     2, "photo folder"),
    ("eval-missing-model",
     lambda f, m, t: ["eval", "--model", str(t / "none.onnx"), "--photos", str(f["root"]),
                      "--config", str(f["config"])], 2, "does not exist"),
    ("train-missing-config",
     lambda f, m, t: ["train", "--config", str(t / "none.toml"), "--out", str(t / "run")], 2,
     "none.toml"),
    ("train-config-not-toml",
     lambda f, m, t: ["train", "--config", str(f["photo"]), "--out", str(t / "run")], 2,
     "is not valid TOML"),
    ("add-style-missing-image",
     lambda f, m, t: ["add-style", "--model", str(f["good"]), "--name", "x", "--image",
                      str(t / "no.jpg"), "--out", str(t / "x.pt")], 2, "not found"),
    ("remove-style-missing-checkpoint",
     lambda f, m, t: ["remove-style", str(f["missing"]), "--name", "candy", "-o",
                      str(t / "x.pt")], 2, "not found"),
    ("rename-style-missing-style",
     lambda f, m, t: ["rename-style", str(f["good"]), "--name", "nope", "--title", "N", "-o",
                      str(t / "x.pt")], 2, "no style named 'nope'"),
    ("precision-missing-folder",
     lambda f, m, t: ["precision", "--model", str(m), "--photos", str(t / "none"), "--emulate",
                      "bf16"], 2, "photo folder"),
    ("bench-bad-sizes",
     lambda f, m, t: ["bench", "--model", str(m), "--sizes", "0x3"], 2, "'0x3' is not N or WxH"),
    ("train-bench-bad-shapes",
     lambda f, m, t: ["train-bench", "--config", str(f["config"]), "--shapes", "12x"], 2,
     "CROPxBATCH"),
]


def _the_one_line(capsys, command: str) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"stylebox {command}: "), err
    assert "Traceback" not in out + err
    return lines[0]


@pytest.mark.parametrize("case, argv, code, text", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_line_with_the_exit_code(files, tiny_onnx, tmp_path, capsys,
                                                    monkeypatch, case, argv, code, text):
    monkeypatch.setenv("STYLEBOX_ENGINE", "onnxruntime")  # no OpenVINO start-up log lines
    args = argv(files, tiny_onnx, tmp_path)
    assert main(args) == code
    assert text in _the_one_line(capsys, args[0])


def test_a_failed_export_says_failed_on_stderr_and_exits_1(files, tmp_path, capsys,
                                                           monkeypatch):
    from stylebox.model import export

    def fail(*args, **kwargs):
        raise export.ExportError("parity: 7 grey levels apart")

    monkeypatch.setattr(export, "export_onnx", fail)
    assert main(["export", str(files["good"]), "-o", str(tmp_path / "o.onnx")]) == 1
    line = _the_one_line(capsys, "export")
    assert line == "stylebox export: FAILED: parity: 7 grey levels apart"


def test_every_error_type_is_a_user_error():
    from stylebox.model.card import CardError
    from stylebox.model.checkpoint import CheckpointError
    from stylebox.model.export import ExportError
    from stylebox.service.controls import ControlError
    from stylebox.service.engine import EngineConfigError, ModelLoadError
    from stylebox.service.http.errors import StyleboxError
    from stylebox.training.add_style import AddStyleError
    from stylebox.training.config import ConfigError
    from stylebox.training.data import DataError
    from stylebox.training.eval import EvalError
    from stylebox.training.loop import TrainError
    from stylebox.training.vgg import VGGError

    usage = [CardError, CheckpointError, ConfigError, DataError, VGGError, TrainError,
             AddStyleError, EvalError, StyleboxError, ControlError]
    failed = [ExportError, ModelLoadError, EngineConfigError]
    assert all(issubclass(t, UserError) for t in usage + failed)
    assert {t.exit_code for t in usage} == {2} and {t.exit_code for t in failed} == {1}


def test_a_bug_still_raises(monkeypatch):
    """Only user errors become one line; anything else keeps its traceback."""
    from stylebox.model import edit

    def boom(argv):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(edit, "remove_main", boom)
    with pytest.raises(ZeroDivisionError):
        main(["remove-style", "x"])
