"""Checkpoints are data: read with torch's weights-only unpickler, so a downloaded file
cannot run code through `stylebox export`, `remove-style`, `add-style` or `train --resume`."""

from __future__ import annotations

import builtins

import pytest
import torch

from stylebox.cli import main
from stylebox.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.conftest import make_tiny_card, make_tiny_generator


class _WritesAFile:
    """Unpickling this calls exec: what a hostile checkpoint would do."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return builtins.exec, (f"open({self.target!r}, 'w').write('ran')",)


def _hostile(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "hostile.pt"
    gen, card = make_tiny_generator(), make_tiny_card()
    torch.save({"model": gen.state_dict(), "card": card.to_dict(),
                "config": _WritesAFile(str(marker))}, path)
    return path, marker


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    path, marker = _hostile(tmp_path)
    with pytest.raises(CheckpointError, match="refused") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("argv", [
    ["export", "{ckpt}", "-o", "{tmp}/m.onnx"],
    ["remove-style", "{ckpt}", "--name", "candy", "-o", "{tmp}/out.pt"],
])
def test_commands_refuse_it_in_one_line(tmp_path, capsys, argv):
    path, marker = _hostile(tmp_path)
    rc = main([a.format(ckpt=path, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "refused" in err and "Traceback" not in err
    assert err.startswith(f"stylebox {argv[0]}: ")
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()


def test_stylebox_checkpoints_still_load(tmp_path):
    path = tmp_path / "ok.pt"
    opt = torch.optim.Adam(make_tiny_generator().parameters())
    save_checkpoint(path, make_tiny_generator(), make_tiny_card(), optimizer=opt.state_dict(),
                    step=3, config={"name": "tiny", "lr": 1e-3, "styles": [{"name": "a"}]})
    gen, card, state = load_checkpoint(path)
    assert card.style_names == ["candy", "mosaic", "udnie"] and state["step"] == 3
