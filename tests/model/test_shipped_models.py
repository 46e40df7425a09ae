"""The committed models are trained and whole: a guard against ever shipping an untrained,
truncated or mislabelled `models/stylebox-a*.onnx` (the default α = 0.25, the α family,
the temporally stabilised α = 0.25, the classic, frame-by-frame α = 0.25 that was the
default before the steady one, and the fast steady one served beside the default).

It runs the file through the service's own OrtEngine (what `make serve` serves) on two of the
shared eval photos and scores every style with `stylebox eval`'s code: each style must sit
well below the unstylized photo's style loss against the same painting, while the photo's
content stays recognisable. Bounds are about half way between what the shipped model scores
and what an untrained generator scores (docs/training.md lists both).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylebox import flicker
from stylebox.service.backends.ort import OrtEngine
from stylebox.training.config import TrainConfig
from stylebox.training.data import list_photos, load_style_images
from stylebox.training.eval import find_style_images, load_photo, score
from stylebox.training.losses import PerceptualLoss
from tests.conftest import ROOT

DATA = ROOT.parent / "shared/data"
MODELS = {"stylebox-a0.25.onnx": 0.25, "stylebox-a1.onnx": 1.0, "stylebox-a0.5.onnx": 0.5,
          "stylebox-a0.1.onnx": 0.1, "stylebox-a0.25-stable.onnx": 0.25,
          "stylebox-a0.25-classic.onnx": 0.25,
          "stylebox-a0.25-fast.onnx": 0.25}  # file -> the α its card must say
SIZE = 192  # px: small enough for CI, large enough for relu5_1 to see 12x12

# Bounds on (style loss of the stylized photo) / (style loss of the photo itself). An
# untrained generator scores 0.48-1.14 per style, 0.91 on average (docs/training.md); the
# model at step 350 of its run already scored 0.14-0.34, 0.22 on average.
MAX_STYLE_RATIO = 0.45
MAX_MEAN_STYLE_RATIO = 0.30


@pytest.fixture(scope="module", params=list(MODELS))
def engine(request) -> OrtEngine:
    model = ROOT / "models" / request.param
    assert model.is_file(), f"{model} is missing: the shipped models must be committed"
    return OrtEngine(model)


@pytest.fixture(scope="module")
def scores(engine: OrtEngine):
    return guard_scores(engine)


def guard_scores(engine: OrtEngine):
    """Per-style scores on the two photos, and the stylized images (also used to calibrate
    the bounds: `python -c "from tests.test_shipped_model import ..."`)."""
    cfg = TrainConfig.load(ROOT / "configs/default.toml").replace(data_root=str(DATA))
    files = list_photos(DATA / "eval-photos")
    picks = [f for f in files if f.stem.startswith(("kodak_", "imagenet_"))][:1]
    picks += [f for f in files if f.stem.startswith("sunhays80_")][:1]
    photos = [load_photo(f, SIZE) for f in picks]
    loss_fn = PerceptualLoss.from_config(cfg)
    by_name = find_style_images(engine.style_names, cfg, {}, DATA / "styles")  # + added ones
    loss_fn.set_style_targets(load_style_images([by_name[n] for n in engine.style_names],
                                                cfg.style_size))
    result, _rows, images = score(engine, photos, loss_fn)
    return {s.style: s for s in result}, images, photos, loss_fn


def test_card_lists_the_default_styles_at_its_alpha(engine: OrtEngine):
    cfg = TrainConfig.load(ROOT / "configs/default.toml")
    assert engine.card.alpha == MODELS[Path(engine.path).name]
    assert engine.card.name == Path(engine.path).stem
    joint = [s.name for s in cfg.styles]
    assert engine.style_names[:8] == joint  # config -> card, in order
    added = [e["name"] for e in engine.card.training.get("style_edits", []) if e["op"] == "add"]
    assert engine.style_names[8:] == added  # anything beyond: added by add-style, recorded
    assert all(s.title for s in engine.card.styles)
    steps, training = 0, engine.card.training
    while training:  # a fine-tuned model counts the steps of the runs it started from
        steps += training.get("steps_done", 0)
        training = training.get("fine_tuned_from")
    assert steps >= 1000, f"the shipped model saw only {steps} training steps"


def test_every_style_is_far_closer_to_its_painting_than_the_photo_is(scores):
    by_style = scores[0]
    assert len(by_style) >= 8
    for name, s in by_style.items():
        assert s.ratio < MAX_STYLE_RATIO, (
            f"{name}: style loss {s.style_loss:.3f} vs the photo's {s.photo_style_loss:.3f} "
            f"(ratio {s.ratio:.2f} >= {MAX_STYLE_RATIO}): is this model trained?")
    mean = float(np.mean([s.ratio for s in by_style.values()]))
    assert mean < MAX_MEAN_STYLE_RATIO, f"mean style ratio {mean:.3f}"


def test_each_stylized_photo_keeps_its_own_content(engine: OrtEngine, scores):
    """The picture follows its photo: against each photo's VGG features, the stylization of
    that photo is nearer than the stylization of the other photo, in every style (a model
    that paints the same picture whatever the input, or noise, fails)."""
    import torch

    from stylebox.training.eval import to_tensor

    _, images, photos, loss_fn = scores
    # α = 0.1 keeps less of the photo (its mosaic scored 0.905 of the other photo's
    # distance); the wider models stay under 0.9. An input-blind model scores ~1.
    margin = 0.95 if engine.card.alpha == 0.1 else 0.9
    with torch.no_grad():
        for name, outs in images.items():
            feats = [loss_fn.vgg(to_tensor(o)) for o in outs]
            for i, photo in enumerate(photos):
                ref = loss_fn.vgg(to_tensor(photo))
                own = loss_fn.content_loss(feats[i], ref).item()
                other = loss_fn.content_loss(feats[1 - i], ref).item()
                assert own < margin * other, (
                    f"{name}, photo {i}: {own:.3f} vs other {other:.3f}")


def test_outputs_are_real_images_and_styles_differ(scores):
    images = scores[1]
    firsts = {name: imgs[0].astype(np.float32) for name, imgs in images.items()}
    for name, img in firsts.items():
        assert img.shape == (SIZE, SIZE, 3)
        assert img.std() > 20, f"{name}: a flat image"
    names = list(firsts)
    for i, a in enumerate(names):  # every pair of styles gives a visibly different picture
        for b in names[i + 1:]:
            diff = np.abs(firsts[a] - firsts[b]).mean()
            assert diff > 8, f"{a} and {b} look the same (mean |diff| {diff:.1f} levels)"


# Models shipped for video: their 1-px pan warping error (grey levels, mean over the 8 joint
# styles on two eval photos at 256 x 192, frame by frame) must stay under this. The stable
# option measures 9.6 here, the alias-free runs about 6.8, the frame-by-frame classic default
# 21.2: a file replaced by one that re-draws its strokes at every pixel of motion fails.
STEADY = {"stylebox-a0.25.onnx": 12.0, "stylebox-a0.25-stable.onnx": 12.0,
          "stylebox-a0.25-fast.onnx": 12.0}


@pytest.mark.parametrize("name", list(STEADY))
def test_models_shipped_for_video_stay_steady_under_a_one_pixel_pan(name: str):
    engine = OrtEngine(ROOT / "models" / name)
    errors = []
    for photo in ("kodak_kodim01.jpg", "imagenet_n01622779_great_grey_owl.jpg"):
        clip = flicker.make_clips(flicker.load_photo(DATA / "eval-photos" / photo), (256, 192), 2,
                          ["pan1"], 16)["pan1"]
        for style in engine.style_names[:8]:
            weights = engine.one_hot(engine.style_names.index(style))
            errors.append(flicker.clip_error([engine.stylize(f, weights) for f in clip.frames],
                                     clip.warps))
    assert np.mean(errors) <= STEADY[name], (name, np.round(errors, 2))


@pytest.mark.parametrize("name", list(MODELS))
def test_a_recorded_checkpoint_is_committed_beside_the_model(name: str):
    """A card that names its checkpoint names one under models/, by a path relative to the
    file (what `stylebox export` writes when the output is beside the checkpoints' folder),
    with the same bytes: a path on the exporting machine would leave the worker nothing to
    add a style to, and would show that machine's folders to every user of the file."""
    from stylebox.model import lineage

    model = ROOT / "models" / name
    record = lineage.read_model_card(model).export.get(lineage.KEY)
    if record is None:  # α = 1: its 20 MB checkpoint is not kept, and its card says none
        return
    assert not Path(record["file"]).is_absolute(), (name, record["file"])
    assert lineage.checkpoint_of(model).is_relative_to((ROOT / "models").resolve())
