"""OpenVINO backend: the same .onnx file on OpenVINO's CPU plugin, in f32, bf16 or f16.

bf16 runs on AMX / AVX512_BF16 units. Why OpenVINO's own API and not ONNX Runtime's
OpenVINO execution provider (a second build of the `onnxruntime` module that would replace
the CPU/CUDA one): docs/performance.md "Engines".

Concurrency: a compiled model is shared; each running request takes an infer request from a
pool of `max_concurrency` (InferPool). STYLEBOX_OV_HINT picks PERFORMANCE_HINT: latency
(one stream on all cores, the fastest single image) or throughput (one stream per couple of
cores: more images/s at 2+ requests at once, each one slower); docs/performance.md measures
both. STYLEBOX_INTRA_OP_THREADS > 0 caps INFERENCE_NUM_THREADS.
"""
from __future__ import annotations

import queue
from functools import cache, partial
from pathlib import Path

import numpy as np
import openvino as ov

from stylebox.model.contract import Port
from stylebox.service.engine import Engine, ModelLoadError, Opened
from stylebox.service.settings import OvHint, RunPrecision, choices

HINTS: dict[str, str] = {h: h.upper() for h in choices(OvHint)}  # PERFORMANCE_HINT's values
# What the plugin can be asked for; INFERENCE_PRECISION_HINT spells them as we do.
PRECISIONS = choices(RunPrecision)
_COMPILED = {"float32": "f32", "bf16": "bf16", "f16": "f16"}  # what the plugin reports back


@cache
def core() -> ov.Core:
    """One Core for the process. Not one per engine: when the last Core goes, OpenVINO
    unloads its CPU plugin, and the first compile had given the calling thread an alternate
    signal stack inside that plugin; the next signal handled there (a SIGTERM to stop
    training, say) then ran on unmapped memory and crashed the process (seen in the tests)."""
    return ov.Core()


def cpu_precisions() -> set[str]:
    """The inference precisions OpenVINO's CPU plugin runs natively on this host."""
    caps = set(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return {"f32"} | {p for p, cap in (("bf16", "BF16"), ("f16", "FP16")) if cap in caps}


def cpu_name() -> str:
    return str(core().get_property("CPU", "FULL_DEVICE_NAME"))


def _reason(e: Exception) -> str:
    """OpenVINO's message without its "Exception from src/...cpp:N:" source-line lines."""
    lines = [ln.strip() for ln in str(e).splitlines()
             if ln.strip() and not ln.startswith("Exception from ")]
    return (lines[0] if lines else type(e).__name__)[:300]


def _port(out: ov.Output) -> Port:
    shape = tuple(d.get_length() if d.is_static else None for d in out.get_partial_shape())
    return Port(out.get_any_name(), out.get_element_type().to_dtype().name, shape)


class InferPool:
    """The run function over a pool of infer requests: a compiled model is shared, but an
    InferRequest must not run on two threads at once; infer() releases the GIL."""

    def __init__(self, compiled: ov.CompiledModel, size: int) -> None:
        self._compiled = compiled
        self._idle: queue.Queue[ov.InferRequest] = queue.Queue()
        for _ in range(size):
            self._idle.put(compiled.create_infer_request())

    @property
    def idle(self) -> int:
        return self._idle.qsize()

    def __call__(self, feed: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        request = self._idle.get()  # blocks when more threads run than requests exist
        try:
            # share_outputs=False (the default): results are copies, safe after put() below
            result = request.infer(feed)
            return [result[self._compiled.output(name)] for name in outputs]
        finally:
            self._idle.put(request)


class OpenVinoEngine(Engine):
    """An Engine on OpenVINO's CPU plugin; `precision` is what to ask the plugin for."""

    def __init__(self, model_path: str | Path, precision: str = "f32",
                 hint: OvHint = "latency", threads: int = 0, requests: int = 2) -> None:
        if precision not in PRECISIONS or hint not in HINTS:
            raise ValueError(f"precision {precision!r} / hint {hint!r}")
        super().__init__(model_path, "openvino", partial(
            open_compiled, precision=precision, hint=hint, threads=threads,
            requests=max(1, requests)))


def open_compiled(path: Path, *, precision: str, hint: OvHint, threads: int,
                  requests: int) -> Opened:
    """`path` read and compiled for the CPU with these hints, as an Opened."""
    try:
        model = core().read_model(str(path))
    except Exception as e:  # OpenVINO raises RuntimeError subclasses with long texts
        raise ModelLoadError(f"{path}: not a loadable ONNX model ({_reason(e)})") from None
    config = {"PERFORMANCE_HINT": HINTS[hint], "INFERENCE_PRECISION_HINT": precision}
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    try:
        compiled = core().compile_model(model, "CPU", config)
    except Exception as e:
        raise ModelLoadError(f"{path}: OpenVINO cannot compile it ({_reason(e)})") from None
    # What the plugin really runs: it quietly keeps f32 where the CPU lacks the units.
    got = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    return Opened(inputs=[_port(i) for i in compiled.inputs],
                  outputs=[_port(o) for o in compiled.outputs],
                  run=InferPool(compiled, requests), precision=_COMPILED.get(got, got),
                  providers=[f"openvino:CPU ({cpu_name()})"],
                  details={"version": ov.get_version().split("-")[0], "hint": hint,
                           "streams": int(compiled.get_property("NUM_STREAMS")),
                           "infer_requests": requests})
