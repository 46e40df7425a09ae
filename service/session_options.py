"""ONNX Runtime session options for the engine, chosen by measurement (docs/performance.md).

Kept apart from service/engine.py so the engine only asks for "options for this model on
these providers". Everything here is plain onnxruntime (no torch).

- graph optimisation level: "all" (the default) adds ORT's layout pass, which switches the
  CPU EP to its blocked NCHWc conv kernels (docs/performance.md times each level).
- spin-wait off by default: idle pool threads sleep instead of taking the cores from
  decode/encode and overlapping inferences (measured in docs/performance.md).
- optimised-model cache: ORT can write the graph it optimised; loading that file with
  optimisation disabled skips the optimiser at the next start-up. The file is keyed by the
  model's bytes, the ORT version, the CPU architecture and the level, because level "all"
  writes hardware-specific ops that another machine or ORT release may not run.
- I/O binding (CUDA): the input is copied to the device once and the output left there
  until one copy back, instead of ORT staging both through its own buffers per run.
"""

from __future__ import annotations

import hashlib
import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stylebox.service.settings import GraphLevel, IoBinding, Settings

log = logging.getLogger("stylebox.engine")

LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
Provider = str | tuple[str, dict[str, str]]  # a name, or (name, EP options) as ORT takes them


@dataclass(frozen=True)
class SessionConfig:
    """What the engine needs beyond the model path, providers and intra-op threads."""

    graph_optimization: GraphLevel = "all"
    inter_op_threads: int = 0  # 0 = ORT's default; matters only with parallel execution
    cpu_mem_arena: bool = True  # reuse activation buffers across runs (measured: keep on)
    # ORT's pool threads spin-wait after a run for the next one. Off (our default), they
    # sleep and leave the cores to decode/encode threads and overlapping inferences.
    intra_op_spinning: bool = False
    optimized_model_dir: str = ""  # "" = no cache; else a folder for optimised models
    io_binding: IoBinding = "auto"  # auto = on when CUDA runs the model

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionConfig:
        return cls(graph_optimization=settings.graph_optimization,
                   inter_op_threads=settings.inter_op_threads,
                   cpu_mem_arena=settings.cpu_mem_arena,
                   intra_op_spinning=settings.intra_op_spinning,
                   optimized_model_dir=settings.optimized_model_dir,
                   io_binding=settings.io_binding)


def make_session_options(cfg: SessionConfig, intra_op_threads: int = 0) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    if intra_op_threads > 0:
        opts.intra_op_num_threads = intra_op_threads
    if cfg.inter_op_threads > 0:
        opts.inter_op_num_threads = cfg.inter_op_threads
    opts.graph_optimization_level = LEVELS[cfg.graph_optimization]
    opts.enable_cpu_mem_arena = cfg.cpu_mem_arena
    if not cfg.intra_op_spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3  # ORT's own warnings are noise in service logs
    return opts


def optimized_path(model: Path, cfg: SessionConfig, providers: list[Provider]) -> Path | None:
    """Where the optimised copy of `model` lives (or would), or None when not cached.

    Only CPU-only sessions are cached: other EPs may claim nodes at load time, and a graph
    saved after that is not portable to a session with a different provider list.
    """
    if not cfg.optimized_model_dir or providers != [CPU] or cfg.graph_optimization == "disable":
        return None
    digest = hashlib.sha256()
    with model.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    key = f"{ort.__version__}|{platform.machine()}|{cfg.graph_optimization}"
    digest.update(key.encode())
    return Path(cfg.optimized_model_dir) / f"{model.stem}.{digest.hexdigest()[:16]}.ort.onnx"


def create_session(model: Path, providers: list[Provider], cfg: SessionConfig,
                   intra_op_threads: int = 0) -> ort.InferenceSession:
    """An InferenceSession; through the optimised-model cache when it is configured."""
    opts = make_session_options(cfg, intra_op_threads)
    cached = optimized_path(model, cfg, providers)
    if cached is not None and cached.is_file():
        opts.graph_optimization_level = LEVELS["disable"]  # already optimised: skip the pass
        try:
            return ort.InferenceSession(str(cached), sess_options=opts, providers=providers)
        except Exception as e:  # a stale or damaged cache file must not stop the service
            log.warning("ignoring unusable optimised model %s: %s", cached, str(e)[:200])
            cached.unlink(missing_ok=True)
            opts = make_session_options(cfg, intra_op_threads)
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            opts.optimized_model_filepath = str(cached)
        except OSError as e:  # e.g. a read-only volume: serve anyway, uncached
            log.warning("not caching the optimised model in %s: %s", cached.parent, e)
    return ort.InferenceSession(str(model), sess_options=opts, providers=providers)


def use_io_binding(cfg: SessionConfig, providers: list[str]) -> bool:
    if cfg.io_binding == "auto":
        return providers[0] == CUDA
    return cfg.io_binding == "on"


def run_bound(sess: ort.InferenceSession, feed: dict[str, np.ndarray], output: str,
              device: str) -> np.ndarray:
    """One run through I/O binding: inputs copied to `device` once, output copied back once."""
    binding = sess.io_binding()  # per call: bindings are not safe to share across threads
    for name, value in feed.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, 0))
    binding.bind_output(output, device)
    sess.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()[0]
