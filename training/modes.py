"""Training modes, one entry each: the perceptual loss is always on, a mode adds its terms.

A mode is everything the rest of the code knows about a way of training: its name, its loss
terms (the log's columns, in order) with the config key of each term's weight, the other
config keys it reads (the model card records them only when the mode runs), the module the
step runs the generator through, and its step function. The step function returns the loss
parts as one mapping, ``{"loss": total, "content": ..., "style": ..., "tv": ..., **terms}``,
the total being the perceptual loss plus each term times its weight (``finish``).

`stylebox train` runs the one mode whose terms have a weight > 0 (and that has what it
``needs``; ``pick``), the plain perceptual mode when none has. A new mode is one more
``Mode`` in ``MODES`` and the config fields it names.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from stylebox.training.distill import Teachers, distill_loss
from stylebox.training.losses import PerceptualLoss
from stylebox.training.temporal import consistency_loss, feature_loss, frame_pair, output_loss

if TYPE_CHECKING:
    from stylebox.training.config import TrainConfig

Parts = dict[str, torch.Tensor]
PERCEPTUAL = ("loss", "content", "style", "tv")  # what every mode logs first


@dataclass
class Batch:
    photo: torch.Tensor  # (B, 3, S, S) in [0, 1]
    weights: torch.Tensor  # (B, N) one-hot
    style_idx: torch.Tensor  # (B,) long
    ref: dict[str, torch.Tensor] | None = None  # the photo's cached content features


@dataclass
class Step:
    """What a step function works with; built once per run."""

    fwd: nn.Module  # the generator, or the mode's module around it (DDP, compiled)
    loss: PerceptualLoss
    opt: torch.optim.Optimizer
    precision: AbstractContextManager  # bf16 autocast or nothing
    cfg: TrainConfig
    teachers: Teachers | None = None


StepFn = Callable[[Step, Batch, torch.Generator], Parts]


@dataclass(frozen=True)
class Mode:
    name: str
    terms: dict[str, str]  # loss term (log column) -> config key of its weight
    step: StepFn
    keys: tuple[str, ...] = ()  # further config keys of its own (card: only when it runs)
    model: Callable[[nn.Module], nn.Module] = field(default=lambda gen: gen)
    needs: str = ""  # a config key that must be set too (distillation: its teachers)

    def active(self, cfg: TrainConfig) -> bool:
        return (not self.needs or bool(getattr(cfg, self.needs))) and any(
            getattr(cfg, key) > 0 for key in self.terms.values())

    def config_keys(self) -> tuple[str, ...]:
        return (*self.terms.values(), *self.keys)

    def log_fields(self) -> list[str]:
        return ["step", *PERCEPTUAL, *self.terms, "lr", "steps_per_s", "elapsed_s"]


def optimise(opt: torch.optim.Optimizer, total: torch.Tensor) -> None:
    """Backward from `total` and one optimiser step: the end of every step function."""
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()


def finish(s: Step, mode: Mode, parts: Parts, terms: Parts) -> Parts:
    """Total = perceptual + sum of weight x term; one optimiser step; the parts, detached."""
    total = parts["loss"]
    for name, value in terms.items():
        weight = getattr(s.cfg, mode.terms[name])
        if weight:
            total = total + weight * value
    optimise(s.opt, total)
    return {k: v.detach() for k, v in {**parts, "loss": total, **terms}.items()}


def perceptual_step(s: Step, b: Batch, rng: torch.Generator) -> Parts:
    with s.precision:
        styled = s.fwd(b.photo, b.weights)  # (B, 3, S, S)
        parts = s.loss(styled, b.photo, b.style_idx, b.ref)
    return finish(s, PLAIN, parts, {})


def distill_step(s: Step, b: Batch, rng: torch.Generator) -> Parts:
    """The perceptual loss plus matching the teachers' pixels and VGG features
    (training/distill.py)."""
    with s.precision:
        target, taught = s.teachers(b.photo, b.style_idx)  # (B, 3, S, S), (B,)
        styled = s.fwd(b.photo, b.weights)
        parts, feats = s.loss.terms(styled, b.photo, b.style_idx, b.ref)
        with torch.no_grad():
            target_feats = s.loss.features(target)
    pixel, feature = distill_loss(styled, target, taught, feats, target_feats)
    return finish(s, DISTILL, parts, {"distill": pixel, "distill_feature": feature})


class PairForward(nn.Module):
    """Frame 1 and frame 2 in one batch: (outputs, encoder features), for the temporal terms.
    A module (not a method call) so DistributedDataParallel sees the whole forward pass."""

    def __init__(self, gen: nn.Module):
        super().__init__()
        self.gen = gen

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.gen.encode(x, w)  # (2B, c3, h/4, w/4)
        out = self.gen.decode(feats, w)[:, :, :x.shape[-2], :x.shape[-1]]  # (2B, 3, H, W)
        return out, feats


def temporal_step(s: Step, b: Batch, rng: torch.Generator) -> Parts:
    """The perceptual loss on frame 1 against the clean photo, plus terms between frame 1 and
    a second frame made from it by a known motion (training/temporal.py): ReCoNet's output
    and feature terms, and ReReVST's self-consistency."""
    cfg = s.cfg
    x1, x2, motion = frame_pair(b.photo, cfg, rng)
    with s.precision:
        out, feats = s.fwd(torch.cat([x1, x2]), torch.cat([b.weights, b.weights]))
        o1, o2 = out.chunk(2)
        parts = s.loss(o1, b.photo, b.style_idx, b.ref)
    f1, f2 = feats.chunk(2)
    zero = o1.new_zeros(()).float()
    scale = cfg.style_scale(b.style_idx)  # (B,) or None: per-style temporal factors
    terms = {"temporal": output_loss(o1, o2, x1, x2, motion, scale),
             "temporal_feature": feature_loss(f1, f2, motion, scale)
             if cfg.temporal_feature_weight else zero,
             "consistency": consistency_loss(o1, o2, motion, scale)
             if cfg.consistency_weight else zero}
    return finish(s, TEMPORAL, parts, terms)


PLAIN = Mode("perceptual", {}, perceptual_step)
TEMPORAL = Mode(
    "temporal", {"temporal": "temporal_weight", "temporal_feature": "temporal_feature_weight",
                 "consistency": "consistency_weight"}, temporal_step,
    keys=("motion_shift", "motion_rotate", "motion_zoom", "motion_noise",
          "temporal_style_scale"), model=PairForward)
DISTILL = Mode(
    "distill", {"distill": "distill_weight", "distill_feature": "distill_feature_weight"},
    distill_step, keys=("teachers",), needs="teachers")
MODES = (TEMPORAL, DISTILL)  # PLAIN when none of these is active


def pick(cfg: TrainConfig) -> Mode:
    """The mode `cfg` trains in; ValueError when it turns on more than one."""
    on = [m for m in MODES if m.active(cfg)]
    if len(on) > 1:
        raise ValueError(f"the {' and '.join(m.name for m in on)} modes do not combine; "
                         "train one, then fine-tune in the other with --init-from")
    return on[0] if on else PLAIN
