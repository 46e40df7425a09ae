"""`stylebox stylize`: files in, same-sized stylized files out, clear errors with exit 2."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stylebox.cli import main
from stylebox.service.cli import stylize_main
from tests.conftest import encode, noise


def stylize(argv: list[str]) -> int:
    """`stylebox stylize ARGV` as the command runs it: errors become a line and an exit code."""
    return main(["stylize", *argv])


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    rgb = noise(27, 35, seed=0)
    path.write_bytes(encode(rgb))
    return path, rgb


def test_writes_same_size_file(tiny_onnx, engine, photo, tmp_path, capsys, monkeypatch):
    src, rgb = photo
    monkeypatch.setenv("STYLEBOX_ENGINE", "onnxruntime")  # the engine `expect` runs on
    out = tmp_path / "out.png"
    assert stylize_main([str(src), "-s", "mosaic", "-o", str(out), "--model", str(tiny_onnx)]) == 0
    im = Image.open(out)
    assert im.size == (35, 27) and im.format == "PNG"
    expect = engine.stylize(rgb, np.array([0, 1, 0], np.float32))
    np.testing.assert_array_equal(np.asarray(im), expect)
    assert "photo.png" in capsys.readouterr().out


def test_format_from_suffix_and_flag(tiny_onnx, photo, tmp_path):
    src, _ = photo
    assert stylize_main([str(src), "-s", "candy", "-o", str(tmp_path / "o.jpg"),
                         "--model", str(tiny_onnx)]) == 0
    assert Image.open(tmp_path / "o.jpg").format == "JPEG"
    assert stylize_main([str(src), "-s", "candy", "-o", str(tmp_path / "o.img"), "--format",
                         "webp", "--quality", "70", "--model", str(tiny_onnx)]) == 0
    assert Image.open(tmp_path / "o.img").format == "WEBP"


@pytest.mark.parametrize("out, extra, text", [
    ("o.tif", [], "-o {out}: cannot write .tif files; stylebox writes .png, .jpg/.jpeg or .webp"),
    ("o.GIF", [], "cannot write .gif files"),
    ("o.jpg", ["--format", "png"], "-o {out} names a .jpg file but --format is png"),
])
def test_an_output_name_it_cannot_honour_is_one_line_exit_2(tiny_onnx, photo, tmp_path, capsys,
                                                            out, extra, text):
    """out.tif would get PNG bytes: refused before any work, naming what it writes."""
    src, _ = photo
    dst = tmp_path / out
    assert stylize([str(src), "-s", "candy", "-o", str(dst), "--model", str(tiny_onnx),
                    *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and text.format(out=dst) in err and "--format" in err
    assert not dst.exists()


@pytest.mark.parametrize("spec, reason", [
    ("candy:x", "weight 'x' for 'candy' is not a number"),
    ("", "no style given"),
    ("candy:0", "style weights are all zero"),
])
def test_style_spec_errors_show_the_cli_syntax(tiny_onnx, photo, tmp_path, capsys, spec, reason):
    """The API says `style=candy`; the command line says `-s candy`."""
    src, _ = photo
    assert stylize([str(src), "-s", spec, "-o", str(tmp_path / "o.png"),
                    "--model", str(tiny_onnx)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"stylebox stylize: -s {spec!r}: {reason}") and "style=" not in err
    assert err.endswith("; expected e.g. -s candy or -s candy:0.7,mosaic:0.3 (valid styles: "
                        "candy, mosaic, udnie)")


def test_several_inputs_go_to_a_directory(tiny_onnx, photo, tmp_path, monkeypatch):
    src, _ = photo
    other = tmp_path / "b.jpg"
    Image.new("RGB", (9, 4), (1, 2, 3)).save(other)
    out = tmp_path / "outdir"
    monkeypatch.setenv("STYLEBOX_MODEL_PATH", str(tiny_onnx))  # the env works like --model
    assert stylize_main([str(src), str(other), "-s", "candy:1,udnie:1", "-o", str(out)]) == 0
    assert Image.open(out / "photo.png").size == (35, 27)
    assert Image.open(out / "b.png").size == (9, 4)


def test_unknown_style_exits_2_listing_styles(tiny_onnx, photo, tmp_path, capsys):
    src, _ = photo
    code = stylize([str(src), "-s", "starry", "-o", str(tmp_path / "o.png"),
                    "--model", str(tiny_onnx)])
    err = capsys.readouterr().err
    assert code == 2 and "starry" in err and "candy, mosaic, udnie" in err
    assert not (tmp_path / "o.png").exists()


def test_bad_weights_exit_2(tiny_onnx, photo, tmp_path, capsys):
    src, _ = photo
    assert stylize([str(src), "-s", "candy:-1", "-o", str(tmp_path / "o.png"),
                    "--model", str(tiny_onnx)]) == 2
    assert "negative" in capsys.readouterr().err


def test_unreadable_inputs_exit_2(tiny_onnx, photo, tmp_path, capsys):
    src, _ = photo
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    code = stylize([str(tmp_path / "missing.png"), str(junk), str(src), "-s", "candy",
                    "-o", str(tmp_path / "o"), "--model", str(tiny_onnx)])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.png" in err and "junk.png" in err and "not an image" in err
    assert Image.open(tmp_path / "o" / "photo.png").size == (35, 27)  # the good one still ran


def test_missing_model_exits_1_with_the_recipe(photo, tmp_path, capsys):
    src, _ = photo
    model = tmp_path / "none.onnx"
    assert stylize([str(src), "-s", "candy", "-o", str(tmp_path / "o.png"),
                    "--model", str(model)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(model) in err and "stylebox export" in err
    assert "relative to the current folder" not in err  # an absolute path


def test_a_relative_default_model_says_where_it_looked(photo, tmp_path, capsys, monkeypatch):
    """Outside the checkout the default models/stylebox-a0.25.onnx is not there: the line
    says it is relative to this folder, the absolute path tried, the flag, the variable and
    where the shipped model is."""
    from stylebox.service.cli import SHIPPED_MODELS

    src, _ = photo
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STYLEBOX_MODEL_PATH", raising=False)
    assert stylize([str(src), "-s", "candy", "-o", "o.png"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("stylebox stylize: model file 'models/stylebox-a0.25.onnx' not found "
                          "(relative to the current folder: "
                          f"{tmp_path / 'models/stylebox-a0.25.onnx'}); pass --model PATH or set "
                          "STYLEBOX_MODEL_PATH; ")
    assert f"has {SHIPPED_MODELS / 'stylebox-a0.25.onnx'}" in err  # this checkout ships it
