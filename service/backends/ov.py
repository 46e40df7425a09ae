"""OpenVINO backend: the same .onnx file on OpenVINO's CPU plugin, in f32, bf16 or f16.

bf16 runs on AMX / AVX512_BF16 units (docs/performance.md "Engines"). Why OpenVINO's own
API and not ONNX Runtime's OpenVINO execution provider: the EP ships as `onnxruntime-openvino`,
a second build of the `onnxruntime` module that replaces the CPU/CUDA one instead of sitting
beside it (so the GPU images could not have both), lags ONNX Runtime's releases (1.24 vs our
1.32) and reaches bf16 only through a pass-through config string. Installed, the two are the
same size (256 MB vs 258 MB for onnxruntime + openvino), and at f32 on a 2-core EPYC they ran
within the noise of each other.

Concurrency: a compiled model is shared; each running request takes an infer request from a
pool of `max_concurrency` (an InferRequest must not run on two threads at once), and infer()
releases the GIL. STYLEBOX_OV_HINT picks PERFORMANCE_HINT: latency (the default: one stream
on all cores, the fastest single image) or throughput (one stream per couple of cores: more
images/s at 2+ requests at once, each one slower); measured in docs/performance.md.
STYLEBOX_INTRA_OP_THREADS > 0 caps INFERENCE_NUM_THREADS.
"""

from __future__ import annotations

import queue
from functools import cache
from pathlib import Path

import numpy as np
import openvino as ov
from stylebox.model.card import CARD_KEY
from stylebox.service.engine import Engine, ModelLoadError, Port, Size

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
PRECISIONS = ("f32", "bf16", "f16")  # INFERENCE_PRECISION_HINT spells them the same
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


class OpenVinoEngine(Engine):
    backend = "openvino"

    def __init__(self, model_path: str | Path, precision: str = "f32", hint: str = "latency",
                 threads: int = 0, requests: int = 2, warmup_sizes: tuple[Size, ...] = ()) -> None:
        if precision not in PRECISIONS or hint not in HINTS:
            raise ValueError(f"precision {precision!r} / hint {hint!r}")
        self._asked, self._hint, self._threads = precision, hint, threads
        self._n_requests = max(1, requests)
        super().__init__(model_path, warmup_sizes)

    @classmethod
    def from_settings(cls, settings, precision: str,
                      warmup: tuple[Size, ...] | None = None) -> OpenVinoEngine:
        sizes = settings.warmup_shapes if warmup is None else warmup
        return cls(settings.model_path, precision, settings.ov_hint, settings.intra_op_threads,
                   settings.max_concurrency, sizes)

    def _open(self, path: Path) -> tuple[dict[str, str], list[Port], list[Port]]:
        try:
            model = core().read_model(str(path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with long texts
            raise ModelLoadError(f"{path}: not a loadable ONNX model ({_reason(e)})") from None
        # The ONNX frontend keeps metadata_props under rt_info["framework"].
        meta = {}
        if model.has_rt_info(["framework", CARD_KEY]):
            meta[CARD_KEY] = model.get_rt_info(["framework", CARD_KEY]).astype(str)
        config = {"PERFORMANCE_HINT": HINTS[self._hint],
                  "INFERENCE_PRECISION_HINT": self._asked}
        if self._threads > 0:
            config["INFERENCE_NUM_THREADS"] = str(self._threads)
        try:
            self._compiled = core().compile_model(model, "CPU", config)
        except Exception as e:
            raise ModelLoadError(f"{path}: OpenVINO cannot compile it ({_reason(e)})") from None
        # What the plugin really runs: it quietly keeps f32 where the CPU lacks the units.
        compiled = self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self.precision = _COMPILED.get(compiled, compiled)
        self.providers = [f"openvino:CPU ({cpu_name()})"]
        self.streams = int(self._compiled.get_property("NUM_STREAMS"))
        self._pool: queue.Queue[ov.InferRequest] = queue.Queue()
        for _ in range(self._n_requests):
            self._pool.put(self._compiled.create_infer_request())
        return (meta, [_port(i) for i in self._compiled.inputs],
                [_port(o) for o in self._compiled.outputs])

    @property
    def runtime(self) -> dict:
        return {**super().runtime, "version": ov.get_version().split("-")[0],
                "hint": self._hint, "streams": self.streams, "infer_requests": self._n_requests}

    def _run(self, feed: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        request = self._pool.get()  # blocks when more threads run than requests exist
        try:
            # share_outputs=False (the default): results are copies, safe after put() below
            result = request.infer(feed)
            return [result[self._compiled.output(name)] for name in outputs]
        finally:
            self._pool.put(request)
