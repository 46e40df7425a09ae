"""Temporal stability in training, without video data (ReCoNet's losses on synthetic motion).

ReCoNet (Gao et al. 2018, "ReCoNet: Real-time Coherent Video Style Transfer Network") adds
two terms to the perceptual loss, both comparing consecutive frames after warping the first
onto the second with optical flow:

- output level: (O2 - warp(O1)) should equal the input's own change in luminance,
  (I2 - warp(I1))_Y, so lighting changes pass through and nothing else changes;
- feature level: the encoder's features of frame 2 should equal warp(features of frame 1).

Here the second frame is made from the training photo itself by a known random motion (a
sub-pixel translation, a small rotation and zoom: an affine warp) plus fresh sensor-like
noise on both frames, so the flow is exact and no flow data set or flow network is needed.
Sub-pixel shifts are the point: strided convolutions answer them with new texture
(docs/flicker.md), and only a loss that sees them can teach the network not to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylebox.training.config import TrainConfig

_LUMA = (0.299, 0.587, 0.114)  # Rec. 601, as ReCoNet's luminance term


@dataclass(frozen=True)
class Motion:
    """Frame 2 is frame 1 moved by `theta`: frame2(p) = frame1(A p) (affine_grid's sense)."""

    theta: torch.Tensor  # (B, 2, 3), normalised coordinates, align_corners=False

    def warp(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) at any resolution -> frame 1's content moved where frame 2 has it."""
        grid = F.affine_grid(self.theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)

    def mask(self, like: torch.Tensor, border: int = 1) -> torch.Tensor:
        """(B, 1, h, w): 1 where frame 2's pixel saw frame 1 (fully inside, `border` px in)."""
        b, _, h, w = like.shape
        ones = torch.ones(b, 1, h, w, dtype=self.theta.dtype, device=self.theta.device)
        if border:  # pixels next to frame 1's edge mix in the zero padding: leave them out
            ones[:, :, :border] = 0
            ones[:, :, -border:] = 0
            ones[:, :, :, :border] = 0
            ones[:, :, :, -border:] = 0
        return (self.warp(ones) > 0.999).to(like.dtype)


def random_motion(batch: int, height: int, width: int, cfg: TrainConfig,
                  rng: torch.Generator, device: torch.device | str = "cpu") -> Motion:
    """A random affine motion per sample: shift up to cfg.motion_shift px, rotation up to
    cfg.motion_rotate degrees and zoom up to cfg.motion_zoom about the centre."""

    def uniform(scale: float) -> torch.Tensor:
        return (torch.rand(batch, generator=rng) * 2 - 1) * scale  # (B,) in [-scale, scale]

    angle = uniform(math.radians(cfg.motion_rotate))
    zoom = 1 + uniform(cfg.motion_zoom)
    tx, ty = uniform(cfg.motion_shift), uniform(cfg.motion_shift)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # A rotation in pixels is anisotropic in normalised coordinates unless H = W:
    # N = D^-1 R D with D = diag(W/2, H/2).
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
    theta[:, 0, 2], theta[:, 1, 2] = 2 * tx / width, 2 * ty / height
    return Motion(theta.to(device))


def add_noise(x: torch.Tensor, max_sigma: float, rng: torch.Generator) -> torch.Tensor:
    """Gaussian noise of a per-sample sigma in [0, max_sigma] grey levels, clipped to [0, 1]."""
    if max_sigma <= 0:
        return x
    b = x.shape[0]
    sigma = torch.rand(b, 1, 1, 1, generator=rng) * (max_sigma / 255.0)  # (B, 1, 1, 1)
    noise = torch.randn(x.shape, generator=rng) * sigma
    return (x + noise.to(x.device, x.dtype)).clamp(0, 1)


def frame_pair(photo: torch.Tensor, cfg: TrainConfig, rng: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, Motion]:
    """(frame 1, frame 2, motion) from a batch of photos (B, 3, H, W) in [0, 1]."""
    b, _, h, w = photo.shape
    motion = random_motion(b, h, w, cfg, rng, photo.device)
    clean2 = motion.warp(photo.float()).to(photo.dtype)
    return add_noise(photo, cfg.motion_noise, rng), add_noise(clean2, cfg.motion_noise, rng), \
        motion


def luminance(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)  # (B, 1, H, W)


def _visible_mean(err: torch.Tensor, mask: torch.Tensor,
                  scale: torch.Tensor | None) -> torch.Tensor:
    """Mean of `err` (B, C, h, w) over the visible pixels (mask (B, 1, h, w)) and channels,
    each sample's share times its factor in `scale` (B,) when given."""
    visible = mask if scale is None else mask * scale.to(mask.dtype).view(-1, 1, 1, 1)
    return (visible * err).sum() / (err.shape[1] * mask.sum()).clamp_min(1)


def output_loss(out1: torch.Tensor, out2: torch.Tensor, in1: torch.Tensor, in2: torch.Tensor,
                motion: Motion, scale: torch.Tensor | None = None) -> torch.Tensor:
    """ReCoNet's output term: mean over visible pixels and channels of
    ((O2 - warp(O1)) - (I2 - warp(I1))_Y)^2, images in [0, 1]; `scale` (B,) weighs samples."""
    out1, out2, in1, in2 = (t.float() for t in (out1, out2, in1, in2))
    mask = motion.mask(out2)  # (B, 1, H, W)
    change = (out2 - motion.warp(out1)) - luminance(in2 - motion.warp(in1))
    return _visible_mean(change.square(), mask, scale)


def consistency_loss(out1: torch.Tensor, out2: torch.Tensor, motion: Motion,
                     scale: torch.Tensor | None = None) -> torch.Tensor:
    """ReReVST's compound regularisation (Wang et al. 2020): the output of the moved, noisy
    frame should be the moved output, whatever the noise: mean visible (O2 - warp(O1))^2.
    Unlike the output term it passes no change of the input through, so the noise that
    ReCoNet's term lets into the output is penalised too."""
    out1, out2 = out1.float(), out2.float()
    mask = motion.mask(out2)  # (B, 1, H, W)
    return _visible_mean((out2 - motion.warp(out1)).square(), mask, scale)


def feature_loss(f1: torch.Tensor, f2: torch.Tensor, motion: Motion,
                 scale: torch.Tensor | None = None) -> torch.Tensor:
    """ReCoNet's feature term, relative: mean visible (F2 - warp(F1))^2 / mean F1^2."""
    f1, f2 = f1.float(), f2.float()
    mask = motion.mask(f2, border=1)  # (B, 1, h, w) at the features' resolution
    err = _visible_mean((f2 - motion.warp(f1)).square(), mask, scale)
    return err / f1.detach().square().mean().clamp_min(1e-6)
