"""`stylebox compare`: models side by side, labelled, on ONNX Runtime."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from stylebox.cli import main
from stylebox.compare import LABEL
from stylebox.samples import synthetic_photo


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(synthetic_photo(120, 90, scene="landscape", shapes=6)).save(path)
    return path


def test_grid_has_a_row_per_photo_and_style_and_a_column_per_model(tiny_onnx, photo,
                                                                     tmp_path, capsys):
    other = tmp_path / "other.onnx"
    shutil.copy(tiny_onnx, other)
    out = tmp_path / "cmp.png"
    assert main(["compare", str(photo), "--model", f"a={tiny_onnx}", "--model", f"b={other}",
                 "--styles", "candy,udnie", "--size", "64", "-o", str(out)]) == 0
    grid = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert grid.shape == (LABEL + 2 * 64, 3 * 64, 3)

    def tile(r: int, c: int) -> np.ndarray:  # below the style's caption
        return grid[LABEL + r * 64 + 20:LABEL + (r + 1) * 64, c * 64:(c + 1) * 64]

    # The same network in two columns paints the same; a style differs from the photo and
    # from the other style.
    assert np.array_equal(tile(0, 1), tile(0, 2)) and np.array_equal(tile(1, 1), tile(1, 2))
    assert np.abs(tile(0, 1) - tile(0, 0)).mean() > 5
    assert np.abs(tile(0, 1) - tile(1, 1)).mean() > 1
    assert "2 rows x 2 models" in capsys.readouterr().out


def test_refuses_unknown_style_and_missing_model(tiny_onnx, photo, tmp_path, capsys):
    out = tmp_path / "cmp.png"
    assert main(["compare", str(photo), "--model", f"a={tiny_onnx}", "--styles", "wave",
                 "-o", str(out)]) != 0
    assert "no style wave" in capsys.readouterr().err
    assert main(["compare", str(photo), "--model", f"a={tmp_path / 'none.onnx'}",
                 "--styles", "candy", "-o", str(out)]) != 0
    assert "NAME=PATH" in capsys.readouterr().err and not out.exists()


def test_pan_animates_a_one_pixel_move_forwards_and_back(tiny_onnx, photo, tmp_path):
    from PIL import ImageSequence

    out = tmp_path / "pan.gif"
    assert main(["compare", str(photo), "--model", f"a={tiny_onnx}", "--styles", "candy",
                 "--size", "48", "--pan", "3", "-o", str(out)]) == 0
    frames = [np.asarray(f.convert("RGB")).astype(int)
              for f in ImageSequence.Iterator(Image.open(out))]
    assert len(frames) == 4  # 0, 1, 2, then 1 on the way back
    photo0, photo1 = frames[0][LABEL + 20:, :48], frames[1][LABEL + 20:, :48]
    # The photo column moved left by one pixel (GIF's palette allows a small error).
    assert np.abs(photo1[:, :-1] - photo0[:, 1:]).mean() < np.abs(photo1 - photo0).mean()
    assert main(["compare", str(photo), "--model", f"a={tiny_onnx}", "--styles", "candy",
                 "--pan", "3", "-o", str(tmp_path / "pan.png")]) != 0
