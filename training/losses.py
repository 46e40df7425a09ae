"""Perceptual loss (Johnson et al. 2016) for N styles at once.

Style: squared error between Gram matrices of VGG features, over several layers, against
targets computed once per style and cached as an (N, C, C) table per layer; each image in a
batch indexes its own style's row. Content: squared error between VGG features of output and
input photo. Optional total variation.

Both are *relative* errors: a layer's style term is divided by the mean squared entry of
that style's target Gram, the content term by the mean squared reference feature. Raw Gram
errors differ by four orders of magnitude between relu1_1 and relu4_1 (and by 10x between
styles), so with raw sums one layer would decide everything; relative, the photo itself scores
about 0.3-1.5 per layer against every style and the weights mean the same for any layer list.
Grams and errors run in float32 even under bf16 autocast: Gram entries are sums of H*W
products and lose too much in bf16.

Cheaper training steps (docs/training.md, *Step cost*): the deep style layers see coarse
structure, so ``coarse_layers`` computes them on the output halved (a 2 x 2 mean) against
targets from the style image halved the same way: the strokes keep their size relative to
the style image, and the deep VGG pass, most of a step's cost, runs on a quarter of the
pixels. The photo's content features can come from a cache (training/featcache.py) instead
of a reference pass. Scores (`stylebox eval`, `stylebox flicker`) always use every layer at
full resolution (``measure``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from stylebox.training.vgg import VGGError, VGGFeatures, load_vgg

if TYPE_CHECKING:
    from stylebox.training.config import TrainConfig


def gram(f: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C), normalised by C*H*W so layers and sizes compare.

    ``bf16``: the product from bf16 features; the matmul still sums in float32 (AMX, AVX512
    and CUDA all accumulate bf16 products in fp32), only each finished entry is rounded to
    bf16 (8 bits of mantissa) before it returns as float32. An option of training
    (``bf16_gram``), never of the scores."""
    b, c, h, w = f.shape
    # Autocast would run the product in bf16 again, whatever f's dtype: switch it off here.
    with torch.autocast(f.device.type, enabled=False):
        if bf16:
            f = f.to(torch.bfloat16).reshape(b, c, h * w)
            return (f @ f.transpose(1, 2)).float() / (c * h * w)
        f = f.float().reshape(b, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()


class PerceptualLoss(nn.Module):
    def __init__(self, vgg: VGGFeatures, content_layers: list[str], style_layers: list[str],
                 content_weight: float = 1.0, style_weight: float = 2.0, tv_weight: float = 0.0,
                 coarse_layers: list[str] = (), bf16_gram: bool = False):
        super().__init__()
        self.vgg = vgg
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)
        # Style layers computed at half resolution; the rest (content included) at full.
        self.coarse = [n for n in self.style_layers if n in coarse_layers]
        self.bf16_gram = bf16_gram  # the output's Grams only; the targets stay float32
        self.fine = list(dict.fromkeys(
            self.content_layers + [n for n in self.style_layers if n not in self.coarse]))
        self.wc, self.ws, self.wtv = content_weight, style_weight, tv_weight
        # The photo's reference pass stops at the deepest content layer; None runs the whole
        # VGG as before (kept for `stylebox train-bench --full-reference`).
        self.ref_layers: list[str] | None = self.content_layers
        self.targets: dict[str, torch.Tensor] = {}  # layer -> (N, C, C)
        self.scales: dict[str, torch.Tensor] = {}  # layer -> (N,) mean squared target entry
        self.factors: torch.Tensor | None = None  # (N,) a factor on each row's style term

    @classmethod
    def from_config(cls, cfg: TrainConfig, vgg: VGGFeatures | None = None,
                    measure: bool = False) -> PerceptualLoss:
        """The loss `cfg` describes (layers, weights), on `vgg` or on cfg's VGG-19 weights;
        ``measure``: every layer at full resolution, as the scores define it."""
        if vgg is None:
            src = (cfg.vgg_weights if cfg.vgg_weights == "torchvision"
                   else cfg.resolve(cfg.vgg_weights))
            relative = not Path(cfg.vgg_weights).expanduser().is_absolute()
            if src != "torchvision" and relative and not src.is_file():
                # A relative vgg_weights: the data root is the first suspect, not the file.
                cfg.check_data_root([cfg.vgg_weights])
                raise VGGError(f"VGG weights file {cfg.vgg_weights} not found in the data root "
                               f"{cfg.data_root} ({src.resolve()}); pass --data-root DIR, or "
                               "set vgg_weights to the file")
            vgg = load_vgg(src, cfg.content_layers + cfg.style_layers)
        return cls(vgg, cfg.content_layers, cfg.style_layers, cfg.content_weight,
                   cfg.style_weight, cfg.tv_weight, [] if measure else cfg.coarse_style_layers,
                   cfg.bf16_gram and not measure)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> every loss layer's features: the coarse style layers
        from x halved, the others from x."""
        feats = self.vgg(x, self.fine)
        if self.coarse:
            feats.update(self.vgg(F.avg_pool2d(x, 2), self.coarse))
        return feats

    @torch.no_grad()
    def set_style_targets(self, style_images: list[torch.Tensor],
                          factors: list[float] | None = None) -> None:
        """One (1, 3, H, W) image in [0, 1] per style, each at its own size; `factors`, one
        per image, weigh each style's samples in the style term (None: 1 each)."""
        per_style = []
        for img in style_images:
            feats = self.features(img.float())
            per_style.append({n: gram(feats[n])[0] for n in self.style_layers})
        self.targets = {n: torch.stack([s[n] for s in per_style]) for n in self.style_layers}
        self.scales = {n: t.pow(2).mean(dim=(1, 2)).clamp_min(1e-12)
                       for n, t in self.targets.items()}
        if factors is not None and len(factors) != len(style_images):
            raise ValueError(f"{len(factors)} style factors for {len(style_images)} styles")
        self.factors = None if factors is None else torch.tensor(
            factors, device=style_images[0].device)

    def style_loss(self, feats: dict[str, torch.Tensor], style_idx: torch.Tensor) -> torch.Tensor:
        """Sum over layers of the relative Gram error, each image against its own style."""
        total = 0.0
        for n in self.style_layers:
            err = (gram(feats[n], self.bf16_gram)
                   - self.targets[n][style_idx]).pow(2).mean(dim=(1, 2))  # (B,)
            err = err / self.scales[n][style_idx]
            if self.factors is not None:
                err = err * self.factors[style_idx]
            total = total + err.mean()
        return total

    def content_loss(self, feats: dict[str, torch.Tensor],
                     ref: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for n in self.content_layers:
            r = ref[n].float()
            total = total + F.mse_loss(feats[n].float(), r) / r.pow(2).mean().clamp_min(1e-12)
        return total

    def forward(self, output: torch.Tensor, photo: torch.Tensor, style_idx: torch.Tensor,
                ref: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """output, photo: (B, 3, H, W) in [0, 1]; style_idx: (B,) long; ref: the photo's
        content features when cached. The parts: {"loss", "content", "style", "tv"}."""
        return self.terms(output, photo, style_idx, ref)[0]

    def terms(self, output: torch.Tensor, photo: torch.Tensor, style_idx: torch.Tensor,
              ref: dict[str, torch.Tensor] | None = None
              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The loss parts and the output's VGG features (which distillation compares too)."""
        if not self.targets:
            raise RuntimeError("call set_style_targets() first")
        feats = self.features(output)
        if ref is None:
            with torch.no_grad():  # only as deep as the content layers (relu2_2: ~1/8 the cost)
                ref = self.vgg(photo, self.ref_layers)
        content = self.content_loss(feats, ref)
        style = self.style_loss(feats, style_idx)
        tv = total_variation(output.float()) if self.wtv else output.new_zeros(()).float()
        total = self.wc * content + self.ws * style + self.wtv * tv
        return {"loss": total, "content": content, "style": style, "tv": tv}, feats
