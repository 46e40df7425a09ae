"""The engine: one loaded model on one runtime, checked against the model contract.

`Engine` reads the model card from the file itself (model/onnxfile.py, no runtime needed, so
a file that is no ONNX model, or one whose weights lie outside its folder, is refused before
any runtime parses it). A backend
(service/backends/: one module each, ONNX Runtime and OpenVINO) only opens the file and
returns what it opened as an `Opened`: the ports its runtime reports, a run function, the
precision it really computes in and its device list. `Engine` checks the ports against the
card and model/contract.py (the definition export writes) and owns the rest: padding tiny
images, style weights, statistics in and out for tiling, warm-up.
service/backends/__init__.py picks the backend and precision from the settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylebox.errors import UserError
from stylebox.model import contract
from stylebox.model.card import CARD_KEY, CardError, ModelCard
from stylebox.model.contract import Port
from stylebox.model.onnxfile import NotOnnxError, check_external, read_onnx

log = logging.getLogger("stylebox.engine")

Size = tuple[int, int]  # (H, W)
# One inference: the feed by input name, the output names wanted -> those outputs, as arrays
# the caller owns (not views of buffers the runtime reuses). Thread-safe.
RunFn = Callable[[dict[str, np.ndarray], list[str]], list[np.ndarray]]


class ModelLoadError(UserError):
    """The model file is missing, unreadable, or breaks the contract; str() is one line."""

    exit_code = 1  # nothing can be served or scored: the command's work failed


class EngineConfigError(ModelLoadError):
    """The settings ask for what this host cannot do (a missing package, bf16 on a CPU
    without it, a precision the bound refuses); str() is one line that names the fix."""


@dataclass(frozen=True)
class Opened:
    """What a backend opened. Everything the engine needs from it, so none can be forgotten."""

    inputs: list[Port]  # as the runtime reports them; None = a symbolic dimension
    outputs: list[Port]
    run: RunFn
    precision: str  # what the runtime really computes in: f32, bf16, f16
    providers: list[str]  # ORT's execution providers, or the runtime's device list
    details: Mapping[str, Any] = field(default_factory=dict)  # more for /model's runtime


def read_card(path: Path) -> ModelCard:
    """The card of the model file at `path`, read without a runtime (model/onnxfile.py);
    ModelLoadError (one line) for anything that is not a servable stylebox model file."""
    if path.is_dir():
        raise ModelLoadError(f"{str(path)!r} is a folder; give the .onnx file in it")
    if not path.is_file():
        raise ModelLoadError(f"model file {str(path)!r} does not exist")
    try:
        onnx = read_onnx(path)
        check_external(path, onnx)
    except NotOnnxError as e:
        raise ModelLoadError(f"{path}: not a loadable ONNX model ({e})") from None
    except OSError as e:  # no permission, a file that vanished
        raise ModelLoadError(f"{path}: cannot read it ({e.strerror})") from None
    if CARD_KEY not in onnx.metadata:
        raise ModelLoadError(f"{path}: no model card (metadata {CARD_KEY!r}); "
                             "export the model with `stylebox export`")
    try:
        return ModelCard.from_json(onnx.metadata[CARD_KEY])
    except CardError as e:
        raise ModelLoadError(f"{path}: invalid model card: {e}") from None


class Engine:
    """One loaded model on one runtime. Thread-safe: the service runs requests in threads.

    `backend` is STYLEBOX_ENGINE's spelling ("onnxruntime", "openvino"); `open_model` opens
    `path` and returns an Opened, or raises ModelLoadError with one line.
    """

    def __init__(self, model_path: str | Path, backend: str,
                 open_model: Callable[[Path], Opened]) -> None:
        path = Path(model_path)
        self.card = read_card(path)  # before any runtime parses the file
        # Statistics in and out (tiled inference) when the card says so; else the old graph.
        # The card's norm_stats section is read here only; the rest of the service asks the
        # engine.
        stats = self.card.export.get("norm_stats") or {}
        try:
            self.stats_size = int(stats.get("size", 0))
            self.receptive_radius = int(stats.get("receptive_radius", 0))
            self.grid = int(stats.get("grid", contract.DEFAULT_GRID))
            self.min_side = int(self.card.export.get("min_side", contract.MIN_SIDE))
            channels = [int(c) for c in stats.get("channels") or []]
        except (TypeError, ValueError):
            raise ModelLoadError(f"{path}: invalid export section in the model card") from None
        # Each CIN layer's width, in the order its (means, variances) sit in the statistics;
        # None when the card does not give a layout that adds up (pooling then averages).
        self.stats_channels: list[int] | None = \
            channels if channels and 2 * sum(channels) == self.stats_size else None
        opened = open_model(path)
        try:
            contract.check(opened.inputs, opened.outputs, self.card.n_styles, self.stats_size)
        except contract.ContractError as e:
            raise ModelLoadError(f"{path}: {e}") from None
        self.path = path
        self.backend = backend
        self.precision = opened.precision
        self.providers = list(opened.providers)
        self._details = dict(opened.details)
        self._run = opened.run
        # Set by service.backends when bf16/f16 was checked against f32 at start-up.
        self.precision_check: dict[str, Any] | None = None
        self.warmup_ms: dict[str, float] = {}
        # ms for one 640 x 480 frame, timed once by service/models.py `measure` as the
        # service loads the model: GET /models shows it, LIVE_MODEL=auto chooses by it.
        self.live_ms: float | None = None
        # use_stats = 0 makes norm_stats irrelevant; one zero buffer serves every request.
        self._no_stats = {contract.STATS: np.zeros((1, self.stats_size), np.float32),
                          contract.USE_STATS: np.zeros((1, 1), np.float32)} \
            if self.stats_size else {}

    @property
    def runtime(self) -> dict[str, Any]:
        """What serves, for /model, /readyz, /metrics and the start-up log."""
        return {"engine": self.backend, "precision": self.precision,
                "providers": list(self.providers), "precision_check": self.precision_check,
                **self._details}

    # -- shared by every backend -----------------------------------------------------------

    @property
    def style_names(self) -> list[str]:
        return self.card.style_names

    @property
    def supports_stats(self) -> bool:
        """Whether the model takes and returns CIN statistics (needed for tiling)."""
        return self.stats_size > 0

    def one_hot(self, index: int) -> np.ndarray:
        """The float32 (N,) style weights that select style `index` alone."""
        weights = np.zeros(self.card.n_styles, np.float32)
        weights[index] = 1.0
        return weights

    def stylize(self, rgb: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB + float32 (N,) weights -> uint8 (H, W, 3). Thread-safe."""
        x, w, (h, wd) = self._prepare(rgb, weights)
        feed = {contract.IMAGE: x[None], contract.WEIGHTS: w,  # (1, H, W, 3), (1, N)
                **self._no_stats}
        out = self._run(feed, [contract.STYLIZED])[0][0]
        return out[:h, :wd] if x.shape[:2] != (h, wd) else out

    def stylize_stats(self, rgb: np.ndarray, weights: np.ndarray,
                      stats: np.ndarray | None = None,
                      use: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Like stylize, with statistics: None -> the image's own (returned, float32 (S,));
        given (S,) -> every CIN layer normalises with those (a tile), or with
        use * given + (1 - use) * its own (a video frame). Returns the statistics each layer
        computed from its input in this pass. Thread-safe."""
        if not self.supports_stats:
            raise ValueError("this model was exported without norm_stats (no tiling)")
        x, w, (h, wd) = self._prepare(rgb, weights)
        use = np.zeros((1, 1), np.float32) if stats is None else np.full((1, 1), use, np.float32)
        given = self._no_stats[contract.STATS] if stats is None else \
            np.asarray(stats, np.float32).reshape(1, self.stats_size)
        feed = {contract.IMAGE: x[None], contract.WEIGHTS: w, contract.STATS: given,
                contract.USE_STATS: use}
        out, computed = self._run(feed, [contract.STYLIZED, contract.COMPUTED_STATS])
        return out[0][:h, :wd], computed[0]

    def _prepare(self, rgb: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, Size]:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
        w = np.asarray(weights, dtype=np.float32).reshape(1, -1)
        if w.shape[1] != self.card.n_styles:
            raise ValueError(f"expected {self.card.n_styles} weights, got {w.shape[1]}")
        h, wd = rgb.shape[:2]
        pad_h, pad_w = max(0, self.min_side - h), max(0, self.min_side - wd)
        if pad_h or pad_w:
            # The network's reflection padding needs min_side; edge-pad and crop back after.
            x = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        else:
            x = np.ascontiguousarray(rgb)  # a no-op for Pillow's arrays
        return x, w, (h, wd)

    def warmup(self, sizes: tuple[Size, ...] | list[Size]) -> dict[str, float]:
        """Run each (H, W) once so the first real request at that size pays no set-up.

        ORT plans memory per new input shape, OpenVINO compiles per new shape, and CUDA's
        cuDNN runs its algorithm search per new shape (seconds); warming the common size
        buckets moves that to start-up. Returns {"WxH": ms} for the log and the benchmark,
        also kept in `warmup_ms`.
        """
        weights = self.one_hot(0)
        out: dict[str, float] = {}
        for h, w in sizes:
            t0 = time.perf_counter()
            self.stylize(np.zeros((h, w, 3), np.uint8), weights)
            out[f"{w}x{h}"] = (time.perf_counter() - t0) * 1000
        if out:
            log.info("warm-up (ms): %s", ", ".join(f"{k} {v:.0f}" for k, v in out.items()))
        self.warmup_ms = out
        return out
