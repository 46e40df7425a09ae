"""The ONNX Runtime session behind every request, loaded and checked once.

The model contract (see model/export.py, which needs torch and so is not imported here):
input `image` uint8 (B, H, W, 3) RGB, input `style_weights` float32 (B, N) with rows summing
to 1, output `stylized` uint8 (B, H, W, 3); the model card rides in the ONNX metadata.
Models exported with instance-norm statistics (the default since tiling) also take
`norm_stats` float32 (B, S) and `use_stats` float32 (B, 1) and return `computed_stats`
(B, S); see service/tiling.py. Older two-input models still load and serve.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.card import CARD_KEY, CardError, ModelCard
from service.session_options import (
    CPU,
    CUDA,
    Provider,
    SessionConfig,
    create_session,
    run_bound,
    use_io_binding,
)

log = logging.getLogger("stylebox.engine")

# Mirrors model.export's INPUT_NAMES / OUTPUT_NAME (that module imports torch).
IMAGE_INPUT, WEIGHTS_INPUT, OUTPUT = "image", "style_weights", "stylized"
STATS_INPUT, USE_INPUT, STATS_OUTPUT = "norm_stats", "use_stats", "computed_stats"
DEFAULT_MIN_SIDE = 8
_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": "TensorrtExecutionProvider",
            "coreml": "CoreMLExecutionProvider", "dml": "DmlExecutionProvider",
            "openvino": "OpenVINOExecutionProvider"}


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable, or breaks the contract; str() is one line."""


def resolve_providers(requested: list[str]) -> list[str]:
    """Keep the available providers in the order asked, drop the rest, end with CPU."""
    available = set(ort.get_available_providers())
    out: list[str] = []
    for name in requested:
        full = _ALIASES.get(name.strip().lower(), name.strip())
        if full not in available:
            log.warning("execution provider %r is not available here (have: %s); skipping it",
                        name, ", ".join(sorted(available)))
        elif full not in out:
            out.append(full)
    if CPU in out:
        out.remove(CPU)
    return [*out, CPU]  # CPU last: ORT falls back to it for any op the others cannot run


TRT = _ALIASES["tensorrt"]


def provider_config(providers: list[str], trt_cache_dir: str = "",
                    trt_fp16: bool = False) -> list[Provider]:
    """`providers` with the TensorRT EP's options attached; the other EPs keep ORT's defaults.

    A TensorRT engine takes minutes to build on a Jetson. With a cache directory (a volume in
    the images) the engine and the timing data are written once and reloaded on restart.
    """
    out: list[Provider] = []
    for name in providers:
        if name != TRT:
            out.append(name)
            continue
        opts = {"trt_fp16_enable": str(trt_fp16)}  # ORT parses "True"/"False"
        if trt_cache_dir:
            opts |= {"trt_engine_cache_enable": "True", "trt_engine_cache_path": trt_cache_dir,
                     "trt_timing_cache_enable": "True", "trt_timing_cache_path": trt_cache_dir}
        out.append((name, opts))
    return out


def _check_stats_io(inputs: dict, outputs: dict, size: int) -> None:
    if STATS_OUTPUT not in outputs:
        raise ModelLoadError(f"outputs are {sorted(outputs)}, expected {STATS_OUTPUT!r} too")
    for arg, width in ((inputs[STATS_INPUT], size), (inputs[USE_INPUT], 1),
                       (outputs[STATS_OUTPUT], size)):
        if arg.type != "tensor(float)" or len(arg.shape) != 2 or arg.shape[1] != width:
            raise ModelLoadError(f"{arg.name!r} is {arg.type} {arg.shape}, expected float "
                                 f"[B, {width}] (the card's norm_stats size)")


def _check_io(sess: ort.InferenceSession, n_styles: int, stats_size: int = 0) -> None:
    inputs = {i.name: i for i in sess.get_inputs()}
    outputs = {o.name: o for o in sess.get_outputs()}
    expected = {IMAGE_INPUT, WEIGHTS_INPUT} | ({STATS_INPUT, USE_INPUT} if stats_size else set())
    if set(inputs) != expected:
        raise ModelLoadError(f"inputs are {sorted(inputs)}, expected {sorted(expected)}")
    if stats_size:
        _check_stats_io(inputs, outputs, stats_size)
    if OUTPUT not in outputs:
        raise ModelLoadError(f"outputs are {sorted(outputs)}, expected {OUTPUT!r}")
    img, wts, out = inputs[IMAGE_INPUT], inputs[WEIGHTS_INPUT], outputs[OUTPUT]
    for arg, dtype in ((img, "tensor(uint8)"), (wts, "tensor(float)"), (out, "tensor(uint8)")):
        if arg.type != dtype:
            raise ModelLoadError(f"{arg.name!r} is {arg.type}, expected {dtype}")
    for arg in (img, out):
        # Symbolic dims come back as str (or None); only a concrete channel count can be wrong.
        if len(arg.shape) != 4 or isinstance(arg.shape[3], int) and arg.shape[3] != 3:
            raise ModelLoadError(f"{arg.name!r} has shape {arg.shape}, expected [B, H, W, 3]")
    if len(wts.shape) != 2 or isinstance(wts.shape[1], int) and wts.shape[1] != n_styles:
        raise ModelLoadError(f"{WEIGHTS_INPUT!r} has shape {wts.shape}, but the card lists "
                             f"{n_styles} styles")


class Engine:
    def __init__(self, model_path: str | Path, providers: list[str] | None = None,
                 intra_op_threads: int = 0, options: SessionConfig | None = None,
                 trt_cache_dir: str = "", trt_fp16: bool = False) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"model file {str(path)!r} does not exist")
        cfg = options or SessionConfig()
        resolved = resolve_providers(providers or [CPU])
        if TRT in resolved and trt_cache_dir:
            try:
                Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
            except OSError as e:  # e.g. a read-only mount: one line, not a traceback
                raise ModelLoadError(f"TensorRT cache {trt_cache_dir!r}: {e.strerror}") from None
        try:
            # Graph level, threads, arena and the optimised-model cache: service/session_options
            self._session = create_session(
                path, provider_config(resolved, trt_cache_dir, trt_fp16), cfg, intra_op_threads)
        except Exception as e:  # ORT raises several private types for bad files
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelLoadError(f"{path}: not a loadable ONNX model ({first[:300]})") from None
        meta = self._session.get_modelmeta().custom_metadata_map
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
            _check_io(self._session, self.card.n_styles, self.stats_size)
        except ModelLoadError as e:
            raise ModelLoadError(f"{path}: {e}") from None
        # use_stats = 0 makes norm_stats irrelevant; one zero buffer serves every request.
        self._no_stats = {STATS_INPUT: np.zeros((1, self.stats_size), np.float32),
                          USE_INPUT: np.zeros((1, 1), np.float32)} if self.stats_size else {}
        self.path = path
        self.min_side = int(self.card.export.get("min_side", DEFAULT_MIN_SIDE))
        self.providers = self._session.get_providers()
        # I/O binding pays off where the model runs off the host (CUDA); see session_options.
        self._bind_device = "cuda" if self.providers[0] == CUDA else "cpu"
        self._io_binding = use_io_binding(cfg, self.providers)
        self.warmup_ms = self.warmup(cfg.warmup_sizes)

    @classmethod
    def from_settings(cls, settings) -> Engine:
        """The engine as service.settings.Settings describes it (the one place that maps them)."""
        return cls(settings.model_path, settings.providers, settings.intra_op_threads,
                   options=SessionConfig.from_settings(settings),
                   trt_cache_dir=settings.trt_cache_dir, trt_fp16=settings.trt_fp16)

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
        if self._io_binding:
            out = run_bound(self._session, feed, OUTPUT, self._bind_device)[0]
        else:
            out = self._session.run([OUTPUT], feed)[0][0]
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
        out, computed = self._session.run([OUTPUT, STATS_OUTPUT], feed)
        return out[0][:h, :wd], computed[0]

    def _prepare(self, rgb: np.ndarray,
                 weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
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

    def warmup(self, sizes: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> dict:
        """Run each (H, W) once so the first real request at that size pays no set-up.

        ORT plans memory per new input shape, and CUDA's cuDNN runs its algorithm search per
        new shape (seconds); warming the common size buckets moves that to start-up.
        Returns {"WxH": ms} for the log and the benchmark.
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
