"""Service settings, read from `STYLEBOX_*` environment variables (CLI flags override them).

Each setting is defined once, here: its type, default, bounds and description. Every choice
is one `Literal` (EngineName, Precision, ...) that the settings, the command lines
(`stylebox serve --engine`, `stylebox eval --precision`, ...) and the backends all use;
docs/settings.md is the table generated from the fields (`python -m stylebox.service.settings`
rewrites it, and a test checks that it is current).
"""

from __future__ import annotations

import json
import os
import re
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "STYLEBOX_"
EngineName = Literal["auto", "onnxruntime", "openvino"]
RunPrecision = Literal["f32", "bf16", "f16"]  # what a runtime computes in
Precision = Literal["auto", RunPrecision]
OvHint = Literal["latency", "throughput"]
OutputFormat = Literal["png", "jpeg", "webp"]
LargeImages = Literal["tile", "downscale"]
GraphLevel = Literal["disable", "basic", "extended", "all"]
IoBinding = Literal["auto", "on", "off"]
LogFormat = Literal["text", "json"]
# Settings that are gone, with what replaces them: start-up stops instead of ignoring them.
REPLACED = {"TRT_FP16": "STYLEBOX_PRECISION=f16 (with the TensorRT provider)"}
# Served models (service/models.py): MODEL_PATH's is `default`; EXTRA_MODELS name the others,
# as ?model=NAME names them, so a name is URL-safe and short.
DEFAULT_MODEL = "default"
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# LIVE_MODEL=auto keeps the default model for live sessions when it holds LIVE_FPS at
# LIVE_SIZE (a webcam's usual 640 x 480), measured once per model at start-up.
LIVE_SIZE = (480, 640)  # (H, W)
LIVE_FPS = 15


def choices(kind: Any) -> tuple[str, ...]:
    """A Literal's values, for argparse's `choices=` and for messages."""
    return get_args(kind)


def comma_or_json(v: object, json_starts: str) -> object:
    """An environment string as a list: JSON when it starts with one of `json_starts`, else
    comma-separated items (stripped, empty ones dropped). Anything else as it is."""
    if not isinstance(v, str):
        return v
    text = v.strip()
    if text[:1] and text[:1] in json_starts:
        return json.loads(text)
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_size(text: str) -> tuple[int, int]:
    """"512" -> (512, 512); "1920x1080" (W x H) -> (1080, 1920) as (H, W)."""
    w, _, h = text.strip().lower().partition("x")
    if not (w.isdigit() and (h or w).isdigit() and int(w) > 0 and int(h or w) > 0):
        raise ValueError(f"size {text!r} is not N or WxH (positive integers)")
    return int(h or w), int(w)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore",
                                      protected_namespaces=())

    model_path: str = Field("models/stylebox-a0.25.onnx", description=(
        "the exported ONNX model; served as the model named `default`"))
    # NoDecode: "fast=a.onnx,hq=b.onnx" as well as JSON; the validator below checks the names.
    extra_models: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "more models served beside MODEL_PATH, as NAME=PATH items (a comma list, or JSON: a "
        "list of them or a {NAME: PATH} object); a request picks one with ?model=NAME; names "
        "are lowercase letters, digits, `_` and `-` (at most 32), `default` is MODEL_PATH's"))
    live_model: str = Field("auto", description=(
        f"the model a live session uses when it names none: auto = `default` when it holds "
        f"{LIVE_FPS} FPS at {LIVE_SIZE[1]}x{LIVE_SIZE[0]} (measured at start-up), else the "
        f"fastest model served; or a model's name"))
    # Which runtime and precision serve (service/backends/__init__.py has the rules).
    engine: EngineName = Field("auto", description=(
        "the runtime: auto picks OpenVINO bf16 on CPUs with AMX or AVX512_BF16, else ONNX "
        "Runtime"))
    precision: Precision = Field("auto", description=(
        "below f32 is checked against f32 at start-up; f16 on ONNX Runtime means TensorRT's "
        "fp16 engines"))
    ov_hint: OvHint = Field("latency", description=(
        "OpenVINO: latency (one stream on all cores) or throughput (streams)"))
    # NoDecode: take the raw env string so "CUDAExecutionProvider,CPUExecutionProvider" works
    # as well as a JSON list; the validator below handles both.
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers, a comma list or JSON")
    host: str = Field("127.0.0.1", description=(
        "where `stylebox serve` listens: this machine only; 0.0.0.0 for every interface "
        "(the container images set that)"))
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0 lets the OS pick")
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0,
                                  description="request body cap (413 above)")
    max_pixels: int = Field(40_000_000, gt=0, description="decode cap, from the header (413)")
    max_inference_pixels: int = Field(8_500_000, gt=0, description=(
        "larger images are tiled or downscaled (LARGE_IMAGES); 8.5 MP lets 4K UHD through"))
    large_images: LargeImages = Field("tile", description=(
        "above MAX_INFERENCE_PIXELS: tile (full size, seam-free; needs a model exported with "
        "norm_stats) or downscale (X-Stylebox-Inference-Size says so)"))
    tile_size: int = Field(1024, ge=64, description="tile side in px, context included")
    tile_margin: int = Field(0, ge=0, description=(
        "context px kept around each tile; 0 = the model's receptive radius, from its card"))
    tile_stats_pixels: int = Field(1_000_000, ge=4096,
                                   description="size of the statistics pass over the image")
    intra_op_threads: int = Field(0, ge=0, description=(
        "threads per inference (ORT intra-op, OpenVINO INFERENCE_NUM_THREADS); 0 = the "
        "runtime's default"))
    max_concurrency: int = Field(2, ge=1, description=(
        "inferences running at once (OpenVINO: its infer requests)"))
    default_format: OutputFormat = Field("png", description="when neither format= nor Accept")
    # Inference speed (service/session_options.py; measured in docs/performance.md).
    graph_optimization: GraphLevel = Field("all", description="ONNX Runtime graph level")
    inter_op_threads: int = Field(0, ge=0, description=(
        "ONNX Runtime threads across independent nodes; 0 = its default"))
    cpu_mem_arena: bool = Field(True, description="ONNX Runtime reuses activation buffers")
    intra_op_spinning: bool = Field(False, description=(
        "ONNX Runtime threads spin between runs (docs/performance.md)"))
    optimized_model_dir: str = Field("", description=(
        "cache ONNX Runtime's optimised graph here; empty = off"))
    io_binding: IoBinding = Field("auto", description="ONNX Runtime I/O binding; auto = on for "
                                                      "CUDA")
    warmup_sizes: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "e.g. 512,1920x1080: run once at start-up (cuDNN and OpenVINO plan per size)"))
    # Hardening (service/http/admission.py and auth.py, README "Operations and security").
    max_queue: int = Field(8, ge=0, description=(
        "stylize requests waiting beyond MAX_CONCURRENCY; more get 503"))
    request_timeout_s: float = Field(60.0, gt=0, description="deadline per admitted request")
    retry_after_s: int = Field(2, ge=1, description="Retry-After on 503 (overload)")
    api_key: SecretStr | None = Field(None, description=(
        "Bearer / X-API-Key secret; unset = no auth"))  # SecretStr: never in reprs or logs
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "comma list or JSON, or \"*\"; empty = CORS off"))
    metrics_public: bool = Field(True, description="/metrics open even with API_KEY")
    drain_s: float = Field(2.0, ge=0, description=(
        "on SIGTERM: /readyz answers 503 this long before the listener closes"))
    log_format: LogFormat = Field("text", description="access log: text or json")
    # The live camera over a WebSocket (service/routers/live.py, docs/live.md).
    max_live_sessions: int = Field(4, ge=0, description=(
        "WebSocket /live sessions open at once; one more is refused with 503 before the "
        "handshake completes; 0 = live off"))
    live_max_frame_bytes: int = Field(2 * 1024 * 1024, gt=0, description=(
        "largest live frame (JPEG or PNG bytes); a larger one gets an error message and the "
        "session goes on"))
    live_max_frame_pixels: int = Field(1920 * 1080, gt=0, description=(
        "most pixels in one live frame, from its header (an error message above)"))
    live_idle_timeout_s: float = Field(30.0, gt=0, description=(
        "a live session that sends nothing for this long is closed (code 4408)"))
    # TensorRT EP only (Jetson / CUDA images; README "Deployment"): ignored on other EPs.
    trt_cache_dir: str = Field("", description=(
        "TensorRT engine and timing cache (a volume: restarts reuse engines); empty = none"))
    allow_admin_without_key: bool = Field(False, description=(
        "POST /admin/reload with no API_KEY (a trusted network only)"))
    # Video files (POST /videos, service/jobs.py; docs/video.md says why each default).
    video_dir: str = Field("", description=(
        "job files (uploads, status, results) of the video jobs, and of the trainer jobs in "
        "its trainer/ folder; servers and workers share it (one volume); empty = "
        "stylebox-videos in the system temp folder"))
    video_max_upload_bytes: int = Field(256 * 1024 * 1024, gt=0, description=(
        "video upload cap (413 above); 256 MiB holds several minutes of phone 1080p"))
    video_max_duration_s: float = Field(300.0, gt=0, description=(
        "longest clip (413); 5 minutes is about 15 minutes of work at 10 FPS"))
    video_max_frames: int = Field(9000, gt=0, description=(
        "most frames in a clip (413): 5 minutes at 30 FPS; checked again while decoding"))
    video_max_pixels: int = Field(1920 * 1088, gt=0, description=(
        "largest frame as stylized, after max_side (413): 1080p in either orientation; "
        "larger clips pass with max_side"))
    video_upload_timeout_s: float = Field(600.0, gt=0, description=(
        "a video upload must arrive within this (408): it holds a place in the queue; 256 MiB "
        "in 10 minutes is 3.6 Mbit/s"))
    video_max_queue: int = Field(4, ge=0, description=(
        "video jobs waiting per server beyond the running ones; more get 503"))
    video_workers: int = Field(1, ge=1, description=(
        "video jobs running at once per server (their frames share MAX_CONCURRENCY with "
        "POST /stylize)"))
    video_result_ttl_s: float = Field(3600.0, gt=0, description=(
        "how long a finished job and its result are kept"))
    video_heartbeat_s: float = Field(5.0, gt=0, description=(
        "how often a server refreshes its jobs' status; after 6 missed beats its running "
        "jobs read as interrupted and its queued ones are taken over by another server"))
    # Trainer jobs (POST /styles, DELETE /styles/{name}, POST /optimize): run by `stylebox
    # worker` processes, kept in VIDEO_DIR/trainer beside the video jobs (service/trainer.py).
    model_seed: str = Field("", description=(
        "an exported model copied to MODEL_PATH (with the checkpoint its card names) when "
        "MODEL_PATH does not exist yet: a writable model folder on a fresh volume"))
    model_watch_s: float = Field(2.0, ge=0, description=(
        "how often each server looks at MODEL_PATH and reloads it when the file was replaced "
        "(a worker's style edit, an operator's `mv`); 0 = never"))
    trainer_max_queue: int = Field(4, ge=0, description=(
        "trainer jobs waiting for a worker, all servers together; more get 503"))
    trainer_painting_max_bytes: int = Field(20 * 1024 * 1024, gt=0, description=(
        "largest painting (or optimize photo) upload (413)"))
    trainer_painting_max_pixels: int = Field(36_000_000, gt=0, description=(
        "largest painting or optimize photo in pixels (413); paintings are used at 512 px"))
    trainer_max_styles: int = Field(32, ge=1, description=(
        "the most styles the model may hold; POST /styles beyond it gets 409"))
    trainer_style_seconds: float = Field(270.0, gt=0, le=7200, description=(
        "worker: how long a new style trains (its steps are fitted to this on the worker's "
        "CPU; export and the swap add about half a minute)"))
    trainer_optimize_max_side: int = Field(1024, ge=64, description=(
        "POST /optimize: the largest max_side asked for (422 above)"))
    trainer_optimize_max_seconds: float = Field(900.0, gt=0, description=(
        "POST /optimize: the longest time_limit_s asked for (422 above)"))
    video_momentum: float = Field(0.9, ge=0, lt=1, description=(
        "stabilize: weight of the carried normalisation statistics (service/stability.py)"))

    @model_validator(mode="before")
    @classmethod
    def _refuse_replaced(cls, values: Any) -> Any:
        for name, instead in REPLACED.items():
            if ENV_PREFIX + name in os.environ:
                raise ValueError(f"{ENV_PREFIX}{name} is no longer read: use {instead}")
        return values

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, v: object) -> object:
        # STYLEBOX_API_KEY="" (e.g. an unset compose variable) means "no auth", not "key ''".
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("providers", "cors_origins", mode="before")
    @classmethod
    def _split_providers(cls, v: object) -> object:
        return comma_or_json(v, "[")

    @field_validator("extra_models", mode="before")
    @classmethod
    def _split_models(cls, v: object) -> object:
        v = comma_or_json(v, "[{")
        if isinstance(v, dict):
            v = [f"{name}={path}" for name, path in v.items()]
        if not isinstance(v, list):
            return v  # pydantic says what is wrong with it
        items = [str(i).strip() for i in v if str(i).strip()]
        seen: set[str] = set()
        for item in items:  # a typo should stop start-up, not the first request
            name, eq, path = (p.strip() for p in item.partition("="))
            if not eq or not path:
                raise ValueError(f"{item!r} is not NAME=PATH (e.g. fast=models/fast.onnx)")
            if not MODEL_NAME.fullmatch(name):
                raise ValueError(f"model name {name!r} must be lowercase letters, digits, '_' "
                                 "or '-', starting with a letter or digit (at most 32)")
            if name == DEFAULT_MODEL:
                raise ValueError(f"the name {DEFAULT_MODEL!r} is MODEL_PATH's model; give "
                                 "the extra model another name")
            if name in seen:
                raise ValueError(f"model name {name!r} is given twice")
            seen.add(name)
        return [f"{n.strip()}={p.strip()}" for n, _, p in (i.partition("=") for i in items)]

    @field_validator("live_model", mode="before")
    @classmethod
    def _lower_live(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _live_model_is_served(self) -> Settings:
        served = self.model_paths
        if self.live_model != "auto" and self.live_model not in served:
            raise ValueError(f"live_model {self.live_model!r} is not a served model; "
                             f"the served ones are {', '.join(served)} (or auto)")
        return self

    @property
    def model_paths(self) -> dict[str, str]:
        """Every served model by name, `default` (MODEL_PATH) first, then EXTRA_MODELS."""
        extra = (item.partition("=") for item in self.extra_models)
        return {DEFAULT_MODEL: self.model_path, **{name: path for name, _, path in extra}}

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


def settings_markdown() -> str:
    """docs/settings.md: one row per field, from the fields themselves."""
    rows = ["# Settings", "",
            "Environment variables of `stylebox serve` (and `stylebox stylize`), generated from "
            "service/settings.py by `python -m stylebox.service.settings > docs/settings.md`.",
            "", "| variable | default | values | meaning |", "| --- | --- | --- | --- |"]
    for name, f in Settings.model_fields.items():
        default = f.get_default(call_default_factory=True)
        if isinstance(default, list):
            default = ",".join(default)
        if isinstance(default, bool):
            default = str(default).lower()
        shown = "unset" if default is None else f"`{default}`" if default != "" else "empty"
        if get_origin(f.annotation) is Literal:
            kind = " ".join(f"`{c}`" for c in choices(f.annotation))
        else:
            kind = {int: "integer", float: "number", bool: "`true` `false`"}.get(
                f.annotation, "list" if f.metadata and NoDecode in f.metadata else "text")
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {kind} | {f.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
