"""The stylebox generator: Johnson et al. (2016) layout with conditional instance norm.

One set of convolutions is shared by every style; each style owns one row of the γ and β
tables of every CIN layer (Dumoulin et al. 2017). A (B, N) style-weights vector picks a
row (one-hot) or blends rows (convex weights) in the same forward pass. The width
multiplier α scales every channel count where it is set (``ch``), as in MobileNet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GeneratorConfig:
    n_styles: int
    alpha: float = 1.0
    base_channels: tuple[int, int, int] = (32, 64, 128)
    n_residual: int = 5

    def __post_init__(self) -> None:
        self.base_channels = tuple(int(c) for c in self.base_channels)  # lists from JSON
        if self.n_styles < 1:
            raise ValueError("n_styles must be >= 1")
        if not 0 < self.alpha <= 4:
            raise ValueError(f"alpha must be in (0, 4], got {self.alpha}")

    def ch(self, c: int) -> int:
        """Channels after the width multiplier; never below 2 so the norm has something."""
        return max(2, int(c * self.alpha + 0.5))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["base_channels"] = list(self.base_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        keys = ("n_styles", "alpha", "base_channels", "n_residual")
        return cls(**{k: d[k] for k in keys if k in d})


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose affine (γ, β) is `weights @ table`, one table row per style."""

    def __init__(self, channels: int, n_styles: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(n_styles, channels))  # (N, C)
        self.beta = nn.Parameter(torch.zeros(n_styles, channels))  # (N, C)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W), w: (B, N). Plain Mul/Add after a scale-free norm keeps the ONNX
        # graph importable by TensorRT (its instance-norm plugin wants constant γ/β).
        x = F.instance_norm(x, eps=self.eps)
        gamma = (w @ self.gamma)[:, :, None, None]  # (B, C, 1, 1)
        beta = (w @ self.beta)[:, :, None, None]  # (B, C, 1, 1)
        return x * gamma + beta


class ConvCIN(nn.Module):
    """Reflection pad -> conv -> CIN -> (ReLU). ``upsample`` does nearest x2 first."""

    def __init__(self, cin, cout, k, n_styles, stride=1, upsample=False, relu=True):
        super().__init__()
        self.upsample, self.relu = upsample, relu
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride)
        self.norm = ConditionalInstanceNorm(cout, n_styles)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # no transposed convs
        x = self.norm(self.conv(self.pad(x)), w)
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    def __init__(self, c: int, n_styles: int):
        super().__init__()
        self.a = ConvCIN(c, c, 3, n_styles)
        self.b = ConvCIN(c, c, 3, n_styles, relu=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x, w), w)


class Generator(nn.Module):
    """(B, 3, H, W) in [0, 1] + (B, N) style weights -> (B, 3, H, W) in [0, 1].

    Any H, W >= 8 works: the two stride-2 convs give ceil(H/4), the two upsamplings give
    4*ceil(H/4) >= H, and the output is cropped back to the input size.
    """

    MIN_SIDE = 8  # reflection padding at 1/4 resolution needs 2 pixels per side

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        n, (c1, c2, c3) = cfg.n_styles, (cfg.ch(c) for c in cfg.base_channels)
        self.down = nn.ModuleList([
            ConvCIN(3, c1, 9, n),
            ConvCIN(c1, c2, 3, n, stride=2),
            ConvCIN(c2, c3, 3, n, stride=2),
        ])
        self.res = nn.ModuleList([ResidualBlock(c3, n) for _ in range(cfg.n_residual)])
        self.up = nn.ModuleList([
            ConvCIN(c3, c2, 3, n, upsample=True),
            ConvCIN(c2, c1, 3, n, upsample=True),
        ])
        self.out_pad = nn.ReflectionPad2d(4)
        self.out_conv = nn.Conv2d(c1, 3, 9)  # the last conv: no norm

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        h, wd = x.shape[-2], x.shape[-1]
        y = x
        for layer in self.down:
            y = layer(y, w)  # (B, c3, ceil(H/4), ceil(W/4)) at the end
        for block in self.res:
            y = block(y, w)
        for layer in self.up:
            y = layer(y, w)  # (B, c1, 4*ceil(H/4), 4*ceil(W/4))
        y = torch.sigmoid(self.out_conv(self.out_pad(y)))  # squash into [0, 1]
        return y[:, :, :h, :wd]  # (B, 3, H, W)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class UInt8Generator(nn.Module):
    """What is exported: uint8 RGB HWC batches in and out, conversion inside the graph.

    The service then hands Pillow's array straight in and the output straight to the encoder.
    """

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # (B, 3, H, W)
        y = self.generator(x, style_weights)
        y = torch.clamp(torch.round(y * 255.0), 0.0, 255.0)
        return y.to(torch.uint8).permute(0, 2, 3, 1)  # (B, H, W, 3)


def one_hot(index: int | list[int], n_styles: int, device=None) -> torch.Tensor:
    idx = torch.as_tensor([index] if isinstance(index, int) else index, device=device)
    return F.one_hot(idx, n_styles).to(torch.float32)  # (B, N)
