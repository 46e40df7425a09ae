"""The engine protocol: what the service needs from whatever runs the network.

The model contract (see model/export.py, which needs torch and so is not imported here):
input `image` uint8 (B, H, W, 3) RGB, input `style_weights` float32 (B, N) with rows summing
to 1, output `stylized` uint8 (B, H, W, 3); the model card rides in the ONNX metadata.
Models exported with instance-norm statistics (the default since tiling) also take
`norm_stats` float32 (B, S) and `use_stats` float32 (B, 1) and return `computed_stats`
(B, S); see service/tiling.py. Older two-input models still load and serve.

`Engine` holds everything that does not depend on the runtime: reading and checking the card
and the graph's inputs and outputs, padding tiny images, style weights, warm-up. A backend
(service/backends/: one module each, ONNX Runtime and OpenVINO) only opens the file, says
what its graph looks like (`Port`s) and runs one feed. service/backends/__init__.py picks
the backend and precision from the settings.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from stylebox.model.card import CARD_KEY, CardError, ModelCard

from stylebox.errors import UserError

log = logging.getLogger("stylebox.engine")

# Mirrors model.export's INPUT_NAMES / OUTPUT_NAME (that module imports torch).
IMAGE_INPUT, WEIGHTS_INPUT, OUTPUT = "image", "style_weights", "stylized"
STATS_INPUT, USE_INPUT, STATS_OUTPUT = "norm_stats", "use_stats", "computed_stats"
DEFAULT_MIN_SIDE = 8
Size = tuple[int, int]  # (H, W)


class ModelLoadError(UserError):
    """The model file is missing, unreadable, or breaks the contract; str() is one line."""

    exit_code = 1  # nothing can be served or scored: the command's work failed


class EngineConfigError(ModelLoadError):
    """The settings ask for what this host cannot do (a missing package, bf16 on a CPU
    without it, a precision the bound refuses); str() is one line that names the fix."""


@dataclass(frozen=True)
class Port:
    """One graph input or output as the backend reports it; None is a symbolic dimension."""

    name: str
    dtype: str  # numpy spelling: "uint8", "float32", ...
    shape: tuple[int | None, ...]


def _check_stats_io(inputs: dict[str, Port], outputs: dict[str, Port], size: int) -> None:
    if STATS_OUTPUT not in outputs:
        raise ModelLoadError(f"outputs are {sorted(outputs)}, expected {STATS_OUTPUT!r} too")
    for arg, width in ((inputs[STATS_INPUT], size), (inputs[USE_INPUT], 1),
                       (outputs[STATS_OUTPUT], size)):
        if arg.dtype != "float32" or len(arg.shape) != 2 or arg.shape[1] != width:
            raise ModelLoadError(f"{arg.name!r} is {arg.dtype} {list(arg.shape)}, expected "
                                 f"float32 [B, {width}] (the card's norm_stats size)")


def check_io(inputs: dict[str, Port], outputs: dict[str, Port], n_styles: int,
             stats_size: int = 0) -> None:
    expected = {IMAGE_INPUT, WEIGHTS_INPUT} | ({STATS_INPUT, USE_INPUT} if stats_size else set())
    if set(inputs) != expected:
        raise ModelLoadError(f"inputs are {sorted(inputs)}, expected {sorted(expected)}")
    if stats_size:
        _check_stats_io(inputs, outputs, stats_size)
    if OUTPUT not in outputs:
        raise ModelLoadError(f"outputs are {sorted(outputs)}, expected {OUTPUT!r}")
    img, wts, out = inputs[IMAGE_INPUT], inputs[WEIGHTS_INPUT], outputs[OUTPUT]
    for arg, dtype in ((img, "uint8"), (wts, "float32"), (out, "uint8")):
        if arg.dtype != dtype:
            raise ModelLoadError(f"{arg.name!r} is {arg.dtype}, expected {dtype}")
    for arg in (img, out):
        # Symbolic dims are None; only a concrete channel count can be wrong.
        if len(arg.shape) != 4 or arg.shape[3] not in (None, 3):
            raise ModelLoadError(f"{arg.name!r} has shape {list(arg.shape)}, "
                                 "expected [B, H, W, 3]")
    if len(wts.shape) != 2 or wts.shape[1] not in (None, n_styles):
        raise ModelLoadError(f"{WEIGHTS_INPUT!r} has shape {list(wts.shape)}, but the card "
                             f"lists {n_styles} styles")


class Engine(ABC):
    """One loaded model on one runtime. Thread-safe: the service runs requests in threads."""

    backend: ClassVar[str]  # "onnxruntime", "openvino": STYLEBOX_ENGINE's spelling
    precision: str = "f32"  # what the runtime really computes in (f32, bf16, f16)
    providers: list[str]  # ORT's execution providers, or the runtime's device list
    # Set by service.backends when bf16/f16 was checked against f32 at start-up.
    precision_check: dict[str, Any] | None = None

    def __init__(self, model_path: str | Path, warmup_sizes: tuple[Size, ...] = ()) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"model file {str(path)!r} does not exist")
        meta, inputs, outputs = self._open(path)
        if CARD_KEY not in meta:
            raise ModelLoadError(f"{path}: no model card (metadata {CARD_KEY!r}); "
                                 "export the model with `stylebox export`")
        try:
            self.card = ModelCard.from_json(meta[CARD_KEY])
        except CardError as e:
            raise ModelLoadError(f"{path}: invalid model card: {e}") from None
        # Statistics in and out (tiled inference) when the card says so; else the old graph.
        stats = self.card.export.get("norm_stats") or {}
        try:
            self.stats_size = int(stats.get("size", 0))
            self.receptive_radius = int(stats.get("receptive_radius", 0))
        except (TypeError, ValueError):
            raise ModelLoadError(f"{path}: invalid norm_stats in the model card") from None
        try:
            check_io({p.name: p for p in inputs}, {p.name: p for p in outputs},
                     self.card.n_styles, self.stats_size)
        except ModelLoadError as e:
            raise ModelLoadError(f"{path}: {e}") from None
        # use_stats = 0 makes norm_stats irrelevant; one zero buffer serves every request.
        self._no_stats = {STATS_INPUT: np.zeros((1, self.stats_size), np.float32),
                          USE_INPUT: np.zeros((1, 1), np.float32)} if self.stats_size else {}
        self.path = path
        self.min_side = int(self.card.export.get("min_side", DEFAULT_MIN_SIDE))
        self.warmup_ms = self.warmup(warmup_sizes)

    # -- what a backend implements ---------------------------------------------------------

    @abstractmethod
    def _open(self, path: Path) -> tuple[dict[str, str], list[Port], list[Port]]:
        """Load `path`; return (metadata_props, inputs, outputs). Raise ModelLoadError."""

    @abstractmethod
    def _run(self, feed: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        """One inference; arrays the caller owns (not views of reused buffers)."""

    @property
    def runtime(self) -> dict[str, Any]:
        """What serves, for /model, /readyz, /metrics and the start-up log."""
        return {"engine": self.backend, "precision": self.precision,
                "providers": list(self.providers), "precision_check": self.precision_check}

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
        feed = {IMAGE_INPUT: x[None], WEIGHTS_INPUT: w, **self._no_stats}  # (1, H, W, 3), (1, N)
        out = self._run(feed, [OUTPUT])[0][0]
        return out[:h, :wd] if x.shape[:2] != (h, wd) else out

    def stylize_stats(self, rgb: np.ndarray, weights: np.ndarray,
                      stats: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like stylize, with statistics: None -> the image's own (returned, float32 (S,));
        given (S,) -> every CIN layer normalises with those (a tile). Thread-safe."""
        if not self.supports_stats:
            raise ValueError("this model was exported without norm_stats (no tiling)")
        x, w, (h, wd) = self._prepare(rgb, weights)
        use = np.zeros((1, 1), np.float32) if stats is None else np.ones((1, 1), np.float32)
        given = self._no_stats[STATS_INPUT] if stats is None else \
            np.asarray(stats, np.float32).reshape(1, self.stats_size)
        feed = {IMAGE_INPUT: x[None], WEIGHTS_INPUT: w, STATS_INPUT: given, USE_INPUT: use}
        out, computed = self._run(feed, [OUTPUT, STATS_OUTPUT])
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

    def warmed(self, settings: Any) -> Engine:
        """Run the settings' warm-up sizes now (engines built with none, e.g. before the
        precision check decided which one serves); returns self."""
        self.warmup_ms = self.warmup(settings.warmup_shapes)
        return self

    def warmup(self, sizes: tuple[Size, ...] | list[Size]) -> dict[str, float]:
        """Run each (H, W) once so the first real request at that size pays no set-up.

        ORT plans memory per new input shape, OpenVINO compiles per new shape, and CUDA's
        cuDNN runs its algorithm search per new shape (seconds); warming the common size
        buckets moves that to start-up. Returns {"WxH": ms} for the log and the benchmark.
        """
        weights = self.one_hot(0)
        out: dict[str, float] = {}
        for h, w in sizes:
            t0 = time.perf_counter()
            self.stylize(np.zeros((h, w, 3), np.uint8), weights)
            out[f"{w}x{h}"] = (time.perf_counter() - t0) * 1000
        if out:
            log.info("warm-up (ms): %s", ", ".join(f"{k} {v:.0f}" for k, v in out.items()))
        return out
