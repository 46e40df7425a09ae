"""Precision and memory layout for a training step, chosen per device.

bf16 autocast pays where the hardware multiplies bf16: CUDA GPUs, and CPUs with AMX or
AVX512-BF16, where oneDNN runs convolutions as bf16 kernels. On other CPUs (AVX2 only)
oneDNN would emulate bf16 and run slower than fp32, so `amp = "auto"` keeps fp32 there.
channels_last (a config switch, on by default) is independent: oneDNN's bf16 kernels want
NHWC, and it speeds fp32 steps up too. docs/training.md measures both.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import cache
from pathlib import Path

import torch

AMP_CHOICES = ("auto", "on", "off")
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@cache
def _cpuinfo(field: str) -> str:
    """The first /proc/cpuinfo line's value for `field` ("" where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == field:
            return value.strip()
    return ""


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none)."""
    return frozenset(_cpuinfo("flags").split())


def cpu_has_bf16() -> bool:
    """True where the CPU computes in bf16 natively (AMX tiles or AVX512-BF16 dot products)."""
    return any(f in cpu_flags() for f in _BF16_FLAGS)


def normalise_amp(value: bool | str) -> str:
    """TOML/CLI spellings -> "auto" | "on" | "off" (true/false stay accepted)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    v = str(value).strip().lower()
    v = {"true": "on", "false": "off", "1": "on", "0": "off"}.get(v, v)
    if v not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)} (or true/false), "
                         f"got {value!r}")
    return v


def use_amp(device: torch.device, amp: str) -> bool:
    """bf16 autocast on this device? `amp` as TrainConfig holds it ("auto" | "on" | "off");
    "auto": on CUDA, and on CPUs with native bf16."""
    if amp != "auto":
        return amp == "on"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def machine_summary(device: torch.device) -> str:
    """What trained a model, for its card: CPU model (or GPU name), cores, precision path."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__.split('+')[0]}"
    model = _cpuinfo("model name") or "unknown CPU"
    native = "native bf16" if cpu_has_bf16() else "no native bf16"
    return (f"{model}, {torch.get_num_threads()} threads ({native}), "
            f"torch {torch.__version__.split('+')[0]}")
