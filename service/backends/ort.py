"""ONNX Runtime backend: every execution provider (CPU, CUDA, TensorRT, ...), f32 on the CPU.

Session options (threads, graph level, arena, optimised-model cache, I/O binding) live in
service/session_options.py and were chosen by measurement (docs/performance.md).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from stylebox.service.engine import OUTPUT, Engine, ModelLoadError, Port, Size
from stylebox.service.session_options import (
    CPU,
    CUDA,
    Provider,
    SessionConfig,
    create_session,
    run_bound,
    use_io_binding,
)

log = logging.getLogger("stylebox.engine")

_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": "TensorrtExecutionProvider",
            "coreml": "CoreMLExecutionProvider", "dml": "DmlExecutionProvider",
            "openvino": "OpenVINOExecutionProvider"}
TRT = _ALIASES["tensorrt"]
# ORT's element types -> numpy's names, for the contract check in service/engine.py
_DTYPES = {"float": "float32", "double": "float64"}


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


def _port(arg: ort.NodeArg) -> Port:
    # Symbolic dims come back as str (or None): the contract check sees None.
    elem = arg.type.removeprefix("tensor(").removesuffix(")")
    return Port(arg.name, _DTYPES.get(elem, elem),
                tuple(d if isinstance(d, int) else None for d in arg.shape))


class OrtEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, model_path: str | Path, providers: list[str] | None = None,
                 intra_op_threads: int = 0, options: SessionConfig | None = None,
                 trt_cache_dir: str = "", trt_fp16: bool = False) -> None:
        self._cfg = options or SessionConfig()
        self._resolved = resolve_providers(providers or [CPU])
        self._threads = intra_op_threads
        self._trt = (trt_cache_dir, trt_fp16)
        super().__init__(model_path, self._cfg.warmup_sizes)

    @classmethod
    def from_settings(cls, settings, warmup: tuple[Size, ...] | None = None,
                      fp16: bool = False) -> OrtEngine:
        """The engine as service.settings.Settings describes it (the one place that maps them).
        `warmup` overrides the settings' sizes (() = none); `fp16` = TensorRT fp16 engines."""
        cfg = SessionConfig.from_settings(settings)
        if warmup is not None:
            cfg = replace(cfg, warmup_sizes=warmup)
        return cls(settings.model_path, settings.providers, settings.intra_op_threads,
                   options=cfg, trt_cache_dir=settings.trt_cache_dir,
                   trt_fp16=settings.trt_fp16 or fp16)

    def _open(self, path: Path) -> tuple[dict[str, str], list[Port], list[Port]]:
        trt_cache_dir, trt_fp16 = self._trt
        if TRT in self._resolved and trt_cache_dir:
            try:
                Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
            except OSError as e:  # e.g. a read-only mount: one line, not a traceback
                raise ModelLoadError(f"TensorRT cache {trt_cache_dir!r}: {e.strerror}") from None
        try:
            # Graph level, threads, arena and the optimised-model cache: service/session_options
            self._session = create_session(
                path, provider_config(self._resolved, trt_cache_dir, trt_fp16), self._cfg,
                self._threads)
        except Exception as e:  # ORT raises several private types for bad files
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelLoadError(f"{path}: not a loadable ONNX model ({first[:300]})") from None
        self.providers = self._session.get_providers()
        # I/O binding pays off where the model runs off the host (CUDA); see session_options.
        self._bind_device = "cuda" if self.providers[0] == CUDA else "cpu"
        self._io_binding = use_io_binding(self._cfg, self.providers)
        self.precision = "f16" if TRT in self.providers and trt_fp16 else "f32"
        meta = self._session.get_modelmeta().custom_metadata_map
        return (meta, [_port(a) for a in self._session.get_inputs()],
                [_port(a) for a in self._session.get_outputs()])

    def _run(self, feed: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        if self._io_binding and outputs == [OUTPUT]:
            return [run_bound(self._session, feed, OUTPUT, self._bind_device)]
        return self._session.run(outputs, feed)
