"""Which backend and precision serve: STYLEBOX_ENGINE and STYLEBOX_PRECISION, resolved here.

One module per backend (ort.py, ov.py): each opens a file and returns an `Opened` that the
engine checks (service/engine.py), so a third backend is one new module plus its line in
`_open`, the one place that maps settings to backends. The rules (docs/performance.md
"Engines"):

- engine=auto: OpenVINO in bf16 when openvino is installed, the CPU runs bf16 natively
  (AMX or AVX512_BF16: OpenVINO's own capability list) and no GPU provider was asked for;
  otherwise ONNX Runtime in f32 (CUDA and TensorRT stay ONNX Runtime's).
- precision=auto: the fastest precision the chosen engine runs natively here.
- A forced choice the host cannot run (openvino not installed, bf16 on a CPU without it)
  stops start-up with one line that names the fix (EngineConfigError).
- Any precision below f32 is checked at start-up against ONNX Runtime f32 on a fixed image
  (service/precision.py). Over the bound, auto falls back to that f32 engine with a warning;
  a forced precision stops start-up.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging

from stylebox.errors import UserError
from stylebox.model import lineage
from stylebox.service.backends.ort import OrtEngine
from stylebox.service.engine import Engine, EngineConfigError, ModelLoadError
from stylebox.service.precision import compare
from stylebox.service.session_options import SessionConfig
from stylebox.service.settings import EngineName, Precision, Settings

log = logging.getLogger("stylebox.engine")


def _install_ov() -> str:
    """How to get OpenVINO, with the version pyproject's `openvino` extra pins."""
    pins = [r.split(";")[0].strip() for r in importlib.metadata.requires("stylebox") or []
            if r.startswith("openvino")]
    return f"pip install 'stylebox[openvino]'{f' ({pins[0]})' if pins else ''}"


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def _asks_gpu(settings: Settings) -> bool:
    return any(p.strip().lower() not in ("cpu", "cpuexecutionprovider")
               for p in settings.providers)


def _native_precisions() -> tuple[set[str], str]:
    from stylebox.service.backends.ov import cpu_name, cpu_precisions

    return cpu_precisions(), cpu_name()


def choose(settings: Settings) -> tuple[EngineName, Precision]:
    """(engine, precision) for these settings on this host; EngineConfigError if impossible."""
    engine, precision = settings.engine, settings.precision
    if engine == "auto":
        engine = "onnxruntime"
        if precision == "f32" or _asks_gpu(settings):
            pass  # ONNX Runtime's measured f32 path, or its GPU providers
        elif not openvino_installed():
            if precision != "auto":
                raise EngineConfigError(
                    f"STYLEBOX_PRECISION={precision} needs OpenVINO, which is not installed: "
                    f"{_install_ov()}, or set STYLEBOX_PRECISION=auto")
        elif ("bf16" if precision == "auto" else precision) in _native_precisions()[0]:
            engine = "openvino"
        elif precision != "auto":
            _refuse_precision(precision)
    if engine == "openvino":
        if not openvino_installed():
            raise EngineConfigError(f"STYLEBOX_ENGINE=openvino, but the openvino package is "
                                    f"not installed: {_install_ov()}, or set "
                                    "STYLEBOX_ENGINE=auto")
        native, _ = _native_precisions()
        if precision == "auto":
            return engine, "bf16" if "bf16" in native else "f32"
        if precision not in native:
            _refuse_precision(precision)
        return engine, precision
    # ONNX Runtime: f32 kernels on the CPU; f16 only as TensorRT's fp16 engines.
    if precision == "bf16":
        raise EngineConfigError("STYLEBOX_PRECISION=bf16 runs on OpenVINO only: set "
                                "STYLEBOX_ENGINE=openvino (or auto), or STYLEBOX_PRECISION=f32")
    if precision == "f16" and not any("tensorrt" in p.lower() for p in settings.providers):
        raise EngineConfigError("STYLEBOX_PRECISION=f16 with ONNX Runtime needs the TensorRT "
                                "provider (STYLEBOX_PROVIDERS=TensorrtExecutionProvider,...); "
                                "on a CPU use STYLEBOX_ENGINE=openvino")
    return "onnxruntime", "f16" if precision == "f16" else "f32"


def _refuse_precision(precision: str) -> None:
    native, name = _native_precisions()
    units = {"bf16": "AMX or AVX512_BF16", "f16": "AMX-FP16 (or an ARM CPU with FP16)"}
    raise EngineConfigError(
        f"STYLEBOX_PRECISION={precision} needs a CPU with {units[precision]}; this one "
        f"({name}) runs {', '.join(sorted(native))}: set STYLEBOX_PRECISION=auto or f32")


def _open(settings: Settings, engine: EngineName, precision: Precision) -> Engine:
    """The engine for `settings.model_path` on this backend and precision, not warmed yet."""
    if engine == "openvino":
        from stylebox.service.backends.ov import OpenVinoEngine

        return OpenVinoEngine(settings.model_path, precision, settings.ov_hint,
                              settings.intra_op_threads, settings.max_concurrency)
    return OrtEngine(settings.model_path, settings.providers, settings.intra_op_threads,
                     SessionConfig.from_settings(settings), settings.trt_cache_dir,
                     fp16=precision == "f16")


def open_engine(settings: Settings) -> Engine:
    """The engine that serves `settings.model_path`: chosen, loaded, precision-checked, warm."""
    engine = _checked(settings, *choose(settings))
    engine.warmup(settings.warmup_shapes)  # after the check: only the engine that serves
    return engine


def _checked(settings: Settings, name: EngineName, precision: Precision) -> Engine:
    """The engine; below f32, compared with ONNX Runtime f32 first (service/precision.py)."""
    engine = _open(settings, name, precision)
    if engine.precision == "f32":  # asked for f32, or the runtime quietly kept it
        return engine
    reference = _open(settings.model_copy(update={"providers": ["CPUExecutionProvider"]}),
                      "onnxruntime", "f32")
    report = compare(engine, reference)
    engine.precision_check = report
    if report["ok"]:
        log.info("%s %s vs f32 on %s: mean %.2f, p99.9 %.0f, max %.0f grey levels (bound: %s)",
                 engine.backend, engine.precision, report["image"], report["mean"],
                 report["p99_9"], report["max"], report["bound"])
        return engine
    text = (f"{engine.backend} {engine.precision} differs from f32 by mean {report['mean']:.2f}, "
            f"p99.9 {report['p99_9']:.0f} grey levels on {report['image']} "
            f"(bound: {report['bound']})")
    if settings.precision != "auto":
        raise EngineConfigError(f"{text}: refusing it; set STYLEBOX_PRECISION=f32 or auto")
    log.warning("%s: serving ONNX Runtime f32 instead", text)
    # TensorRT fp16 refused: the same providers in f32; OpenVINO refused: the reference
    # already is the f32 engine to serve.
    fallback = _open(settings, "onnxruntime", "f32") if name == "onnxruntime" else reference
    fallback.precision_check = report
    return fallback


def seed_model(settings: Settings) -> None:
    """Where MODEL_PATH is not there yet and MODEL_SEED is set, copy the seed there first
    (model/lineage.py `seed_model`: a fresh volume gets the model and its checkpoint)."""
    if not settings.model_seed:
        return
    try:
        if lineage.seed_model(settings.model_path, settings.model_seed):
            log.info("copied MODEL_SEED %s to %s", settings.model_seed, settings.model_path)
    except (OSError, UserError) as e:
        raise ModelLoadError(f"cannot copy MODEL_SEED {settings.model_seed} to "
                             f"{settings.model_path}: {e}") from None


def load_engine(settings: Settings) -> Engine:
    """`open_engine`, and one log line saying what serves: the app's start-up and reloads."""
    seed_model(settings)
    engine = open_engine(settings)
    log.info("loaded %s (%s@%s, %d styles: %s) on %s %s (%s)", engine.path, engine.card.name,
             engine.card.version, engine.card.n_styles, ", ".join(engine.style_names),
             engine.backend, engine.precision, ", ".join(engine.providers))
    return engine
