"""Service settings, read from `STYLEBOX_*` environment variables (CLI flags override them).

Env var (prefix STYLEBOX_)   default                      meaning
MODEL_PATH                   models/stylebox-a0.25.onnx   the exported ONNX model
PROVIDERS                    CPUExecutionProvider         ORT providers, comma list or JSON
HOST, PORT                   0.0.0.0, 8000                where `stylebox serve` listens
MAX_UPLOAD_BYTES             20 MiB                       request body cap (413 above)
MAX_PIXELS                   40 000 000                   decode cap, from the header (413)
MAX_INFERENCE_PIXELS         8 500 000                    larger images are downscaled
INTRA_OP_THREADS             0 (ONNX Runtime's default)   threads per inference
MAX_CONCURRENCY              2                            inferences running at once
DEFAULT_FORMAT               png                          when neither format= nor Accept

Images up to `max_pixels` are accepted, but the network runs on at most
`max_inference_pixels` (8.5 MP lets 4K UHD, 3840x2160 = 8.3 MP, through untouched). A larger
image is resized to fit that budget (same aspect ratio), stylized, and resized back to its
original width and height; the response says so in `X-Stylebox-Inference-Size`, which then
differs from the image size. This bounds inference memory and latency per request.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

OutputFormat = Literal["png", "jpeg", "webp"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STYLEBOX_", extra="ignore",
                                      protected_namespaces=())

    model_path: str = "models/stylebox-a0.25.onnx"
    # NoDecode: take the raw env string so "CUDAExecutionProvider,CPUExecutionProvider" works
    # as well as a JSON list; the validator below handles both.
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CPUExecutionProvider"])
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)  # 0 = let the OS pick
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_pixels: int = Field(40_000_000, gt=0)
    max_inference_pixels: int = Field(8_500_000, gt=0)
    intra_op_threads: int = Field(0, ge=0)
    max_concurrency: int = Field(2, ge=1)
    default_format: OutputFormat = "png"

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return json.loads(text)
            return [p.strip() for p in text.split(",") if p.strip()]
        return v

    @field_validator("default_format", mode="before")
    @classmethod
    def _lower_format(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip().lower()
            return "jpeg" if v == "jpg" else v
        return v
