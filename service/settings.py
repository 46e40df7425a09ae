"""Service settings, read from `STYLEBOX_*` environment variables (CLI flags override them).

Env var (prefix STYLEBOX_)   default                      meaning
MODEL_PATH                   models/stylebox-a0.25.onnx   the exported ONNX model
ENGINE                       auto                         auto, onnxruntime or openvino
                                                          (service/backends/__init__.py)
PRECISION                    auto                         auto, f32, bf16 or f16; below f32
                                                          is checked against f32 at start-up
OV_HINT                      latency                      OpenVINO: latency (one stream, all
                                                          cores) or throughput (streams)
PROVIDERS                    CPUExecutionProvider         ORT providers, comma list or JSON
HOST, PORT                   0.0.0.0, 8000                where `stylebox serve` listens
MAX_UPLOAD_BYTES             20 MiB                       request body cap (413 above)
MAX_PIXELS                   40 000 000                   decode cap, from the header (413)
MAX_INFERENCE_PIXELS         8 500 000                    larger images are tiled or
                                                          downscaled (LARGE_IMAGES)
LARGE_IMAGES                 tile                         tile (full size, seam-free; needs a
                                                          model exported with norm_stats) or
                                                          downscale
TILE_SIZE                    1024                         tile side in px, context included
TILE_MARGIN                  0 (the model's receptive     context px kept around each tile
                             radius, from its card)
TILE_STATS_PIXELS            1 000 000                    size of the statistics pass
INTRA_OP_THREADS             0 (the runtime's default)    threads per inference (ORT intra-op,
                                                          OpenVINO INFERENCE_NUM_THREADS)
MAX_CONCURRENCY              2                            inferences running at once
                                                          (OpenVINO: its infer requests)
DEFAULT_FORMAT               png                          when neither format= nor Accept
GRAPH_OPTIMIZATION           all                          ORT graph level: disable, basic,
                                                          extended, all (docs/performance.md)
INTER_OP_THREADS             0 (ONNX Runtime's default)   threads across independent nodes
CPU_MEM_ARENA                true                         reuse activation buffers
INTRA_OP_SPINNING            false                        ORT threads spin between runs
OPTIMIZED_MODEL_DIR          "" (off)                     cache the optimised graph here
IO_BINDING                   auto (on for CUDA)           auto, on or off
WARMUP_SIZES                 "" (none)                    e.g. 512,1024,1920x1080: run once
                                                          at start-up (cuDNN search per size)
MAX_QUEUE                    8                            stylize requests waiting beyond
                                                          MAX_CONCURRENCY; more get 503
REQUEST_TIMEOUT_S            60                           deadline per admitted request
RETRY_AFTER_S                2                            Retry-After on 503 (overload)
API_KEY                      unset (no auth)              Bearer / X-API-Key secret
CORS_ORIGINS                 empty (CORS off)             comma list or JSON, or "*"
METRICS_PUBLIC               true                         /metrics open even with API_KEY
DRAIN_S                      2                            on SIGTERM: readyz 503 this long
                                                          before the listener closes
LOG_FORMAT                   text                         access log: text or json
TRT_CACHE_DIR                "" (no cache)                 TensorRT EP engine + timing cache
                                                          (a volume: restarts reuse engines)
TRT_FP16                     false                        TensorRT EP builds fp16 engines
ALLOW_ADMIN_WITHOUT_KEY      false                        POST /admin/reload with no API_KEY

Images up to `max_pixels` are accepted, but the network runs on at most
`max_inference_pixels` (8.5 MP lets 4K UHD, 3840x2160 = 8.3 MP, through untouched). A larger
image is, with LARGE_IMAGES=tile (the default) and a model exported with instance-norm
statistics, stylized at full size in tiles of TILE_SIZE that all share the statistics of one
pass over the image downscaled to TILE_STATS_PIXELS (service/tiling.py; no seams), and the
response carries `X-Stylebox-Tiles`. Otherwise (LARGE_IMAGES=downscale, or an older model) it
is resized to fit the budget (same aspect ratio), stylized, and resized back to its original
width and height; the response says so in `X-Stylebox-Inference-Size`, which then differs
from the image size. Either way inference memory per request is bounded.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

OutputFormat = Literal["png", "jpeg", "webp"]


def parse_size(text: str) -> tuple[int, int]:
    """"512" -> (512, 512); "1920x1080" (W x H) -> (1080, 1920) as (H, W)."""
    w, _, h = text.strip().lower().partition("x")
    if not (w.isdigit() and (h or w).isdigit() and int(w) > 0 and int(h or w) > 0):
        raise ValueError(f"size {text!r} is not N or WxH (positive integers)")
    return int(h or w), int(w)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STYLEBOX_", extra="ignore",
                                      protected_namespaces=())

    model_path: str = "models/stylebox-a0.25.onnx"
    # Which runtime and precision serve (service/backends/__init__.py has the rules).
    engine: Literal["auto", "onnxruntime", "openvino"] = "auto"
    precision: Literal["auto", "f32", "bf16", "f16"] = "auto"
    ov_hint: Literal["latency", "throughput"] = "latency"
    # NoDecode: take the raw env string so "CUDAExecutionProvider,CPUExecutionProvider" works
    # as well as a JSON list; the validator below handles both.
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CPUExecutionProvider"])
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)  # 0 = let the OS pick
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_pixels: int = Field(40_000_000, gt=0)
    max_inference_pixels: int = Field(8_500_000, gt=0)
    # Above max_inference_pixels (service/tiling.py, docs/performance.md "Large images").
    large_images: Literal["tile", "downscale"] = "tile"
    tile_size: int = Field(1024, ge=64)
    tile_margin: int = Field(0, ge=0)  # 0 = the model's receptive radius
    tile_stats_pixels: int = Field(1_000_000, ge=4096)
    intra_op_threads: int = Field(0, ge=0)
    max_concurrency: int = Field(2, ge=1)
    default_format: OutputFormat = "png"
    # Inference speed (service/session_options.py; measured in docs/performance.md).
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    inter_op_threads: int = Field(0, ge=0)
    cpu_mem_arena: bool = True
    intra_op_spinning: bool = False  # measured: see session_options.SessionConfig
    optimized_model_dir: str = ""
    io_binding: Literal["auto", "on", "off"] = "auto"
    warmup_sizes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Hardening (see service/admission.py, service/auth.py, README "Operations and security").
    max_queue: int = Field(8, ge=0)
    request_timeout_s: float = Field(60.0, gt=0)
    retry_after_s: int = Field(2, ge=1)
    api_key: SecretStr | None = None  # SecretStr: never printed in reprs or logs
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    metrics_public: bool = True
    drain_s: float = Field(2.0, ge=0)
    log_format: Literal["text", "json"] = "text"
    # TensorRT EP only (Jetson / CUDA images; README "Deployment"): ignored on other EPs.
    trt_cache_dir: str = ""
    trt_fp16: bool = False
    # POST /admin/reload needs the API key; with no key set it is refused (403) unless this
    # is true (a trusted network, e.g. a sidecar on localhost). See service/routers/admin.py.
    allow_admin_without_key: bool = False

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, v: object) -> object:
        # STYLEBOX_API_KEY="" (e.g. an unset compose variable) means "no auth", not "key ''".
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("providers", "cors_origins", mode="before")
    @classmethod
    def _split_providers(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return json.loads(text)
            return [p.strip() for p in text.split(",") if p.strip()]
        return v

    @field_validator("warmup_sizes", mode="before")
    @classmethod
    def _split_sizes(cls, v: object) -> object:
        items = v.split(",") if isinstance(v, str) else v
        if not isinstance(items, list):
            return items
        out = [str(i).strip().lower() for i in items if str(i).strip()]
        for item in out:  # a typo should stop start-up, not the first request
            parse_size(item)
        return out

    @field_validator("engine", "precision", "ov_hint", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @property
    def warmup_shapes(self) -> tuple[tuple[int, int], ...]:
        """WARMUP_SIZES as (H, W) pairs."""
        return tuple(parse_size(s) for s in self.warmup_sizes)

    @field_validator("default_format", mode="before")
    @classmethod
    def _lower_format(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip().lower()
            return "jpeg" if v == "jpg" else v
        return v
