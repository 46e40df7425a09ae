"""Training configuration: one flat dataclass, read from a small TOML file plus CLI overrides.

The TOML may group keys in `[model]`, `[train]`, `[loss]` and `[data]` tables (for reading);
they are flattened into `TrainConfig`, so `--set style_weight=8` overrides any of them.
Styles come as `[[styles]]` entries (name, path, title, source): this list is the start of
the one chain that carries the style list (config -> checkpoint -> ONNX card -> service).

Relative data paths (`photos`, `vgg_weights`, style `path`) resolve against `data_root`,
which defaults to `$STYLEBOX_DATA` or `../shared/data`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stylebox.errors import UserError
from stylebox.model.card import ModelCard, StyleInfo
from stylebox.model.network import GeneratorConfig
from stylebox.training.accel import normalise_amp

if TYPE_CHECKING:
    import torch

VGG_LAYERS = {  # name -> index of the ReLU in torchvision's vgg19().features
    "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11, "relu3_2": 13,
    "relu3_3": 15, "relu3_4": 17, "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26,
    "relu5_1": 29,
}
_SECTIONS = ("model", "train", "loss", "data")
# Recorded in the card only when the run used them (old cards stay byte-identical); a
# training mode's own keys likewise (training/modes.py).
_VARIANT_KEYS = ("up_blur", "separable", "resize", "widths")
_SPEED_KEYS = ("coarse_style_layers", "bf16_gram")
_WHEN_SET_KEYS = (*_SPEED_KEYS, "temporal_style_scale", "style_weight_scale",
                  "lr_decay_from")  # in the card when set
# where and how this machine ran it, not what was trained
_LOCAL_KEYS = ("styles", "data_root", "device", "log_every", "ckpt_every", "time_limit_min",
               "fit_time_limit", "content_cache")


class ConfigError(UserError):
    """A training config that is missing, is not TOML, or holds a bad key or value."""


@dataclass
class StyleSpec:
    name: str
    path: str
    title: str = ""
    source: str = ""


@dataclass
class TrainConfig:
    styles: list[StyleSpec] = field(default_factory=list)
    name: str = "stylebox"
    version: str = "0.1.0"
    # data
    data_root: str = field(default_factory=lambda: os.environ.get("STYLEBOX_DATA",
                                                                  "../shared/data"))
    photos: str = "train-photos"
    vgg_weights: str = "vgg/vgg19_features_to_relu5_1_fp16.pth"  # a file, or "torchvision"
    max_photos: int = 0  # 0 = all
    # model
    alpha: float = 0.25
    n_residual: int = 5
    base_channels: tuple[int, int, int] = (32, 64, 128)
    blur: int = 0  # anti-aliasing low-pass before the stride-2 convs: 0, 3 or 5 taps
    up_blur: int = 0  # low-pass after each nearest upsample (smooth upsampling): 0, 3 or 5
    # Cheaper variants (model/network.py, docs/frontier.md): depthwise-separable convs,
    # the body at half resolution with a sub-pixel last conv, explicit (pruned) widths.
    separable: bool = False
    resize: str = "none"  # "none", "ends" (the full-resolution ends at half) or "all"
    widths: list[int] = field(default_factory=list)  # per channel group; [] = from alpha
    # distillation (training/distill.py): trained generators (.pt or .onnx) whose outputs the
    # student learns, besides the perceptual loss; each style from the first that has it
    teachers: list[str] = field(default_factory=list)
    distill_weight: float = 5.0  # mean |student - teacher| over pixels in [0, 1]
    distill_feature_weight: float = 0.5  # relative error of the VGG features (all layers)
    # train
    init_from: str = ""  # a checkpoint whose weights start the run (fine-tuning); same styles
    steps: int = 20_000
    batch_size: int = 16  # global: split across DDP ranks
    image_size: int = 256  # random square crops
    style_size: int = 512  # long side of the style image when its Gram targets are made
    lr: float = 1e-3
    norm_lr_scale: float = 10.0  # the γ/β tables' lr = lr * this (training/loop.py)
    lr_schedule: str = "constant"  # or "cosine" (to lr * 0.1 at the last step)
    # cosine only: lr holds until this step, then falls. A resumed run that sets it to the
    # step it resumes at cools down from its own lr instead of jumping into the curve.
    lr_decay_from: int = 0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # bf16 autocast: auto (CUDA, AMX/AVX512-BF16 CPUs) | on | off
    channels_last: bool = True  # NHWC on CUDA and CPU (faster in fp32 and bf16 alike)
    compile: bool = False  # torch.compile the generator
    log_every: int = 50
    ckpt_every: int = 1000
    time_limit_min: float = 0.0  # stop (with a checkpoint) after this many minutes; 0 = none
    # Plan the step count to what the time limit holds at this machine's pace (timed over the
    # first steps), so that a cosine schedule ends where the run stops; at most `steps`.
    fit_time_limit: bool = False
    # loss
    content_weight: float = 1.0
    style_weight: float = 2.0
    # Per style: a factor on style_weight for that style's samples (default 1). A style whose
    # strokes come out stronger than wanted (a style added to a model and then trained with
    # the others: docs/flicker.md) can give content back without moving the rest.
    style_weight_scale: dict[str, float] = field(default_factory=dict)
    tv_weight: float = 0.0
    # Temporal stability (training/temporal.py): a second frame made from each photo by a
    # known random motion plus sensor noise; 0 weights = off (no second frame is made).
    temporal_weight: float = 0.0  # output level: stylized frame 2 vs warped stylized frame 1
    temporal_feature_weight: float = 0.0  # feature level: the encoder's output, warped
    consistency_weight: float = 0.0  # ReReVST: output of the moved noisy frame = moved output
    # Per style: a factor on the temporal terms of that style's samples (default 1). The
    # styles whose strokes flicker most under motion (docs/flicker.md) can be held harder
    # without taking style from the steady ones.
    temporal_style_scale: dict[str, float] = field(default_factory=dict)
    motion_shift: float = 3.0  # max translation, px (sub-pixel: uniform in [-x, x])
    motion_rotate: float = 1.0  # max rotation, degrees
    motion_zoom: float = 0.02  # max relative zoom
    motion_noise: float = 3.0  # max sensor-noise sigma, grey levels (per frame, uniform)
    content_layers: list[str] = field(default_factory=lambda: ["relu2_2"])
    style_layers: list[str] = field(
        default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"])
    # Cheaper steps (training/losses.py, featcache.py): these style layers on the output
    # halved, against targets from the style image halved; the photos' content features
    # from a cache folder (built on first use, refused when stale).
    coarse_style_layers: list[str] = field(default_factory=list)
    content_cache: str = ""
    bf16_gram: bool = False  # the output's Gram products from bf16 features (fp32 sums)

    def __post_init__(self) -> None:
        self.styles = [s if isinstance(s, StyleSpec) else StyleSpec(**s) for s in self.styles]
        self.base_channels = tuple(int(c) for c in self.base_channels)
        try:
            self.amp = normalise_amp(self.amp)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.validate()

    def validate(self) -> None:
        bad = [n for n in self.content_layers + self.style_layers if n not in VGG_LAYERS]
        if bad:
            raise ConfigError(f"unknown VGG layers {bad}; choose from {', '.join(VGG_LAYERS)}")
        bad = [n for n in self.coarse_style_layers
               if n not in self.style_layers or n in self.content_layers]
        if bad:
            raise ConfigError(f"coarse_style_layers {bad} must be style layers "
                              f"({', '.join(self.style_layers)}) and not content layers")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError("lr_schedule must be 'constant' or 'cosine'")
        if not 0 <= self.lr_decay_from < self.steps:
            raise ConfigError("lr_decay_from must be >= 0 and below steps")
        if not self.norm_lr_scale > 0:
            raise ConfigError("norm_lr_scale must be > 0")
        for key in ("steps", "batch_size", "image_size", "style_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1")
        if self.image_size < 16:
            raise ConfigError("image_size must be >= 16")
        try:
            self.generator_config(1)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        from stylebox.training import modes  # its step functions need this module

        for mode in modes.MODES:
            for key in mode.config_keys():
                if not isinstance(getattr(self, key), list | dict) and getattr(self, key) < 0:
                    raise ConfigError(f"{key} must be >= 0")
        for key in ("temporal_style_scale", "style_weight_scale"):
            setattr(self, key, self._checked_scale(key))
        try:
            modes.pick(self)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def _checked_scale(self, key: str) -> dict[str, float]:
        """A per-style table (style name = factor >= 0), its factors as floats."""
        scale = getattr(self, key)
        if not isinstance(scale, dict):
            raise ConfigError(f"{key} must be a table of style name = factor, "
                              "e.g. {starry_night = 3.0}")
        names = [s.name for s in self.styles]
        for name, factor in scale.items():
            if names and name not in names:
                raise ConfigError(f"{key} names {name!r}, not one of the styles "
                                  f"({', '.join(names)})")
            if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 0:
                raise ConfigError(f"{key}[{name!r}] must be a number >= 0")
        return {k: float(v) for k, v in scale.items()}

    def _per_style(self, key: str) -> list[float] | None:
        """A per-style table as one factor per style, in the styles' order (1 where the table
        names no factor); None when the table is empty."""
        table = getattr(self, key)
        return [table.get(s.name, 1.0) for s in self.styles] if table else None

    def style_factors(self) -> list[float] | None:
        """style_weight_scale, one factor per style in the styles' order; None when unset."""
        return self._per_style("style_weight_scale")

    def style_scale(self, style_idx: torch.Tensor) -> torch.Tensor | None:
        """(B,) the temporal_style_scale factor of each sample's style; None when unset."""
        factors = self._per_style("temporal_style_scale")
        if factors is None:
            return None
        import torch

        return torch.tensor(factors)[style_idx.cpu()].to(style_idx.device)

    @property
    def mode(self):  # -> training.modes.Mode
        """The training mode this config runs (training/modes.py)."""
        from stylebox.training import modes

        return modes.pick(self)

    def generator_config(self, n_styles: int | None = None) -> GeneratorConfig:
        """The network this config trains (one definition of its arch: GeneratorConfig)."""
        return GeneratorConfig(
            n_styles=len(self.styles) if n_styles is None else n_styles, alpha=self.alpha,
            base_channels=self.base_channels, n_residual=self.n_residual, blur=self.blur,
            up_blur=self.up_blur, separable=self.separable, resize=self.resize,
            widths=tuple(self.widths))

    # -- paths -----------------------------------------------------------------------------
    def resolve(self, p: str) -> Path:
        path = Path(os.path.expanduser(p))
        return path if path.is_absolute() else Path(self.data_root) / path

    def data_paths(self) -> list[str]:
        """The config's data paths: photos, VGG weights (unless "torchvision"), style images."""
        paths = [self.photos] + [s.path for s in self.styles]
        return paths + ([] if self.vgg_weights == "torchvision" else [self.vgg_weights])

    def check_data_root(self, paths: list[str] | None = None, origin: str = "") -> None:
        """ConfigError (one line naming the folder tried and the fix) when one of `paths`
        (default: every data path) is relative and `data_root` is not a folder: the default
        `../shared/data` is relative to the current folder, not to the repository."""
        paths = self.data_paths() if paths is None else paths
        root = Path(os.path.expanduser(self.data_root))
        if root.is_dir() or all(Path(os.path.expanduser(p)).is_absolute() for p in paths):
            return
        where = "" if root.is_absolute() else f", relative to the current folder: {root.resolve()}"
        origin = f" ({origin})" if origin else ""
        raise ConfigError(
            f"data root {self.data_root!r}{origin} not found{where}; pass --data-root DIR (the "
            "folder holding vgg/, styles/ and train-photos/) or set STYLEBOX_DATA")

    # -- round trip ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["base_channels"] = list(self.base_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        flat: dict[str, Any] = {}
        for k, v in d.items():
            if k in _SECTIONS and isinstance(v, dict):
                flat.update(v)
            else:
                flat[k] = v
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(flat) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        try:
            return cls(**flat)
        except TypeError as e:
            raise ConfigError(str(e)) from None

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] = ()) -> TrainConfig:
        try:
            with open(path, "rb") as f:
                d = tomllib.load(f)
        except FileNotFoundError:
            where = "" if Path(path).is_absolute() else (
                f", relative to the current folder: {Path(path).resolve()}")
            raise ConfigError(f"config file {path} not found{where}; pass --config FILE (the "
                              "stylebox checkout has configs/default.toml)") from None
        except OSError as e:  # a folder, no permission, ...
            raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:  # not TOML, or not text
            raise ConfigError(f"{path} is not valid TOML: {e}") from None
        cfg = cls.from_dict(d)
        return cfg.override(overrides)

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], path: str | Path) -> TrainConfig:
        """The checkpoint's own training config, its data root replaced by $STYLEBOX_DATA when
        that is set: the checkpoint records the folder of the machine that trained it."""
        if not state.get("config"):
            raise ConfigError(f"{path} carries no training config; pass --config")
        cfg = cls.from_dict(state["config"])
        env = os.environ.get("STYLEBOX_DATA")
        return cfg.replace(data_root=env) if env else cfg

    def override(self, items: list[str]) -> TrainConfig:
        """Apply `key=value` strings; values are parsed as TOML (so 1e5, true, ["a"] work)."""
        d = self.to_dict()
        for item in items:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in d:
                raise ConfigError(f"bad override {item!r}: want key=value with key one of "
                                  f"{', '.join(sorted(d))}")
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw  # a bare string such as a path
            d[key] = value
        return TrainConfig.from_dict(d)

    def replace(self, **values: Any) -> TrainConfig:
        d = {**self.to_dict(), **values}
        # `--alpha 1` on the default config must not make a model whose card says "-a0.25".
        old = f"-a{self.alpha:g}"
        if "name" not in values and d["alpha"] != self.alpha and self.name.endswith(old):
            d["name"] = self.name[: -len(old)] + f"-a{float(d['alpha']):g}"
        return TrainConfig.from_dict(d)

    # -- the model card --------------------------------------------------------------------
    def card(self) -> ModelCard:
        if not self.styles:
            raise ConfigError("the config lists no [[styles]]")
        from stylebox.training import modes

        arch = self.generator_config().arch()
        mode = self.mode
        others = {k for m in modes.MODES if m is not mode for k in m.config_keys()}
        return ModelCard(
            name=self.name, version=self.version, alpha=self.alpha,
            styles=[StyleInfo(s.name, s.title, s.source) for s in self.styles],
            arch=arch,
            training={k: v for k, v in self.to_dict().items()
                      if k not in _LOCAL_KEYS and k not in others - set(mode.config_keys())
                      and not (k in _VARIANT_KEYS and k not in arch)
                      and not (k in _WHEN_SET_KEYS and not v)},
        )
