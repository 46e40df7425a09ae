"""Is a lower precision (bf16, f16) close enough to f32? Checked at start-up, not assumed.

The serving engine and an ONNX Runtime f32 engine stylize one fixed image (the photo in the
model card, else the synthetic scene of service/previews) in every style and in the even
blend; the absolute differences in grey levels (0-255, all pixels and channels) give:

- mean: how far the whole picture moved. Bound 2.0.
- p99.9: the worst 0.1 % of values, i.e. whether a region went wrong. Bound 48.
- max: one value; reported, not bounded (see below).

Why these bounds (docs/performance.md "Precision" has the measurements): rounding every
convolution's inputs, weights and outputs to bf16 (what AMX does; f32 accumulation) moves
the shipped models well inside them, with pictures that cannot be told apart, while one
value can flip by over a hundred on a saturated edge, so a max bound would refuse good
models; a mean over 2 or a p99.9 over 48 is a model or runtime that does not hold bf16,
e.g. overflowing statistics.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

MAX_MEAN = 2.0
MAX_P999 = 48.0
BOUND = f"mean <= {MAX_MEAN}, p99.9 <= {MAX_P999:.0f}"
SCENE_SIZE = 256


class _Stylizer(Protocol):
    style_names: list[str]

    def stylize(self, rgb: np.ndarray, weights: np.ndarray) -> np.ndarray: ...

    def one_hot(self, index: int) -> np.ndarray: ...


def check_image(engine: Any) -> tuple[np.ndarray, str]:
    """The fixed image and its description: the card's photo, else the synthetic scene."""
    from stylebox.service.previews import card_sample, sample_image

    rgb = card_sample(engine)
    if rgb is not None:
        return rgb, f"the card's sample photo ({rgb.shape[1]}x{rgb.shape[0]})"
    return sample_image(SCENE_SIZE), f"the synthetic scene ({SCENE_SIZE}x{SCENE_SIZE})"


def differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).ravel()


def summarize(d: np.ndarray) -> dict[str, Any]:
    """Mean, p99.9 and max of absolute differences, and whether they are within BOUND."""
    mean, p999 = float(d.mean()), float(np.percentile(d, 99.9))
    return {"mean": mean, "p99_9": p999, "max": float(d.max()),
            "ok": mean <= MAX_MEAN and p999 <= MAX_P999}


def compare(engine: _Stylizer, reference: _Stylizer,
            image: tuple[np.ndarray, str] | None = None) -> dict[str, Any]:
    """Differences of `engine` from `reference` over every style and the even blend."""
    rgb, what = image or check_image(engine)
    n = len(engine.style_names)
    weights = [engine.one_hot(i) for i in range(n)] + [np.full(n, 1 / n, np.float32)]
    d = np.concatenate([differences(engine.stylize(rgb, w), reference.stylize(rgb, w))
                        for w in weights])
    s = summarize(d)
    return {"image": what, "cases": len(weights), "mean": round(s["mean"], 3),
            "p99_9": round(s["p99_9"], 1), "max": s["max"], "bound": BOUND, "ok": s["ok"]}
