"""stylebox/samples.py: the one synthetic-photo maker of the tools (uploads, the tiling demo's
scene, video and live clips), torch-free."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stylebox.samples import jpeg, photo_jpeg, synthetic_photo


@pytest.mark.parametrize("scene", ["gradient", "landscape", "noise"])
def test_every_scene_is_uint8_rgb_of_the_asked_size_and_deterministic(scene):
    a = synthetic_photo(37, 21, scene=scene, seed=3, shapes=4, grain=5, square=True)
    assert a.shape == (21, 37, 3) and a.dtype == np.uint8
    assert np.array_equal(a, synthetic_photo(37, 21, scene=scene, seed=3, shapes=4, grain=5,
                                             square=True))
    assert not np.array_equal(a, synthetic_photo(37, 21, scene=scene, seed=4, shapes=4,
                                                 grain=5, square=True))


def test_the_gradient_drifts_with_the_frame_and_the_square_moves():
    f0 = synthetic_photo(64, 48, frame=0, square=True)
    f1 = synthetic_photo(64, 48, frame=1, square=True)
    side = 48 // 4
    assert (f0[:side, :side] == (240, 240, 30)).all()  # frame 0: top left
    assert (f1[3:3 + side, 7:7 + side] == (240, 240, 30)).all()  # then 7 right, 3 down
    before, after = (synthetic_photo(64, 48, frame=i)[40, 30].astype(int) for i in (0, 1))
    assert list(after - before) == [3, 2, 0]  # red drifts by 3 levels a frame, green by 2


def test_grain_shapes_and_noise_do_what_they_say():
    flat = synthetic_photo(128, 96).astype(float)
    grainy = synthetic_photo(128, 96, grain=10).astype(float)
    assert 8 < (grainy - flat).std() < 12
    plain = synthetic_photo(128, 96, scene="landscape")
    shaped = synthetic_photo(128, 96, scene="landscape", shapes=60)
    assert (plain != shaped).any(axis=-1).mean() > 0.2  # discs and boxes cover the scene
    noise = synthetic_photo(128, 96, scene="noise")
    assert np.array_equal(noise, np.random.default_rng(0).integers(0, 256, (96, 128, 3),
                                                                    dtype=np.uint8))
    with pytest.raises(ValueError, match="scene"):
        synthetic_photo(8, 8, scene="sky")  # type: ignore[arg-type]


def test_photo_jpeg_is_the_gradient_with_grain(tmp_path):
    data = photo_jpeg(80, 60, seed=2, quality=95)
    assert data[:2] == b"\xff\xd8"
    path = tmp_path / "p.jpg"
    path.write_bytes(data)
    with Image.open(path) as im:
        got = np.asarray(im.convert("RGB")).astype(float)
    want, other = (synthetic_photo(80, 60, seed=s, grain=10).astype(float) for s in (2, 0))
    assert got.shape == want.shape  # the seed's photo (JPEG smooths some grain), not another
    assert np.abs(got - want).mean() < 10 and np.abs(got - other).mean() > 20
    assert jpeg(synthetic_photo(8, 8))[:2] == b"\xff\xd8"


def test_importing_it_needs_no_torch_and_no_tests():
    code = ("import sys, stylebox.samples, stylebox.soak; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'tests')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
