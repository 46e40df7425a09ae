"""ONNX Runtime backend: every execution provider (CPU, CUDA, TensorRT, ...), f32 on the CPU.

Session options (threads, graph level, arena, optimised-model cache, I/O binding) live in
service/session_options.py and were chosen by measurement (docs/performance.md).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stylebox.model import contract
from stylebox.service.engine import Engine, ModelLoadError, Opened
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


class OrtEngine(Engine):
    """An Engine on ONNX Runtime. `fp16`: TensorRT builds fp16 engines (precision f16)."""

    def __init__(self, model_path: str | Path, providers: list[str] | None = None,
                 intra_op_threads: int = 0, options: SessionConfig | None = None,
                 trt_cache_dir: str = "", fp16: bool = False) -> None:
        super().__init__(model_path, "onnxruntime", partial(
            open_session, providers=resolve_providers(providers or [CPU]),
            threads=intra_op_threads, options=options or SessionConfig(),
            trt_cache_dir=trt_cache_dir, fp16=fp16))


def open_session(path: Path, *, providers: list[str], threads: int, options: SessionConfig,
                 trt_cache_dir: str, fp16: bool) -> Opened:
    """An InferenceSession on `path` with these providers and options, as an Opened."""
    if TRT in providers and trt_cache_dir:
        try:
            Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:  # e.g. a read-only mount: one line, not a traceback
            raise ModelLoadError(f"TensorRT cache {trt_cache_dir!r}: {e.strerror}") from None
    try:
        # Graph level, threads, arena and the optimised-model cache: service/session_options
        session = create_session(path, provider_config(providers, trt_cache_dir, fp16),
                                 options, threads)
    except Exception as e:  # ORT raises several private types for bad files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelLoadError(f"{path}: not a loadable ONNX model ({first[:300]})") from None
    used = session.get_providers()
    # I/O binding pays off where the model runs off the host (CUDA); see session_options.
    bind, device = use_io_binding(options, used), "cuda" if used[0] == CUDA else "cpu"

    def run(feed: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        if bind and outputs == [contract.STYLIZED]:
            return [run_bound(session, feed, contract.STYLIZED, device)]
        return session.run(outputs, feed)

    return Opened(inputs=[contract.from_ort(a) for a in session.get_inputs()],
                  outputs=[contract.from_ort(a) for a in session.get_outputs()],
                  run=run, precision="f16" if TRT in used and fp16 else "f32", providers=used)
