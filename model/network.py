"""The stylebox generator: Johnson et al. (2016) layout with conditional instance norm.

One set of convolutions is shared by every style; each style owns one row of the γ and β
tables of every CIN layer (Dumoulin et al. 2017). A (B, N) style-weights vector picks a
row (one-hot) or blends rows (convex weights) in the same forward pass. The width
multiplier α scales every channel count where it is set (``ch``), as in MobileNet.

Anti-aliasing (``blur``, Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"):
a stride-2 convolution keeps every other pixel of what it computes, so a one-pixel shift of
the photo changes which pixels survive and the network paints new texture (video flicker).
With ``blur`` > 0 a fixed binomial low-pass runs before each stride-2 convolution; a blur
and a convolution commute, so this is the cheap form of conv -> blur -> subsample.

Smooth upsampling (``up_blur``, the other half of an alias-free generator): a nearest x2
upsample makes two copies of every coarse feature, so where a feature lands depends on where
the coarse grid falls, and a sub-pixel move of the photo makes the strokes jump by whole
coarse pixels. With ``up_blur`` > 0 the same binomial low-pass runs after each nearest
upsample: nearest x2 then [1, 2, 1] is exactly bilinear x2 (5 taps: a cubic B-spline), so the
features glide with the content instead. Both are fixed filters: no weights, and any trained
checkpoint loads into the network as it is (model/surgery.py). They cost little in the graph:
the low-pass before a strided conv is folded into that conv's kernel (a 3 x 3 conv after
[1, 2, 1] is one 5 x 5 conv), nearest x2 + [1, 2, 1] runs as one bilinear Resize, and the
5-tap upsampling as that Resize and a 3-tap depthwise Conv.

Cheaper variants (docs/frontier.md), each a config field that the card's ``arch`` records,
so export and service need nothing else:

- ``separable``: every convolution after the first is depthwise k x k then pointwise 1 x 1
  (MobileNet); the first keeps its dense 9 x 9, because over 3 RGB channels a depthwise
  kernel leaves the whole layer only 3 spatial filters.
- ``resize`` (the resize trick): the photo is halved (2 x 2 mean) on the way in, and the
  last conv upsamples x2 as it paints: it makes 4 x 3 channels at half resolution that a
  depth-to-space step lays out as 2 x 2 output pixels each (a sub-pixel convolution, Shi et
  al. 2016), so no layer runs at full resolution. "all": every layer runs at half its usual
  resolution (a quarter of the work), so the residual blocks paint strokes twice as large
  relative to the photo until training teaches them otherwise. "ends": only the two
  full-resolution ends move: the first stride-2 conv becomes stride 1 and the last
  upsampling + conv become a 3 x 3 sub-pixel conv, so the residual blocks keep their quarter
  resolution and a trained network's strokes keep their scale. Its two ends are sampling-rate
  changes too, so the alias-free form covers them when it is on: with ``blur`` the halving is
  the 2 x 2 mean after the binomial low-pass ([1, 3, 3, 1] / 8 per axis, one strided
  depthwise conv, same phase), and with ``up_blur`` the binomial low-pass runs on the
  full-resolution logits after the depth-to-space, whose 2 x 2 blocks each come from one
  half-resolution position. Without them (blur = up_blur = 0) both ends are as they were,
  bit for bit; with them, no tensor is added (a checkpoint of either form loads into the
  other) and the graph gains only Pad + Conv.
- ``widths``: explicit channel counts per prunable group (``stylebox prune``), instead of
  base_channels x alpha.

Tiled inference (service/tiling.py) needs every tile to normalise with the same statistics:
a ``NormStats`` passed through the forward pass collects each CIN layer's own (mean, var)
and can substitute given ones, so one pass on a downscaled whole image supplies the
statistics that every full-resolution tile then uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stylebox.model.contract import MIN_SIDE


@dataclass
class GeneratorConfig:
    n_styles: int
    alpha: float = 1.0
    base_channels: tuple[int, int, int] = (32, 64, 128)
    n_residual: int = 5
    blur: int = 0  # taps of the low-pass before each stride-2 conv: 0 (none), 3 or 5
    up_blur: int = 0  # taps of the low-pass after each nearest x2 upsample: 0, 3 or 5
    separable: bool = False  # depthwise + pointwise for every conv after the first
    resize: str = "none"  # "none", "ends" or "all": see the module docstring
    widths: tuple[int, ...] = ()  # channels per group (see groups()); () = base x alpha

    def __post_init__(self) -> None:
        self.base_channels = tuple(int(c) for c in self.base_channels)  # lists from JSON
        self.widths = tuple(int(c) for c in self.widths)
        if self.widths and (len(self.widths) != len(self.groups())
                            or min(self.widths) < 1):
            raise ValueError(f"widths needs {len(self.groups())} channel counts >= 1 "
                             f"({', '.join(self.groups())}), got {list(self.widths)}")
        if self.resize not in RESIZE:
            raise ValueError(f"resize must be one of {', '.join(RESIZE)}, got {self.resize!r}")
        for key in ("blur", "up_blur"):
            if getattr(self, key) not in BLUR_TAPS:
                raise ValueError(f"{key} must be one of {sorted(BLUR_TAPS)}, "
                                 f"got {getattr(self, key)}")
        if self.n_styles < 1:
            raise ValueError("n_styles must be >= 1")
        if not 0 < self.alpha <= 4:
            raise ValueError(f"alpha must be in (0, 4], got {self.alpha}")

    def ch(self, c: int) -> int:
        """Channels after the width multiplier; never below 2 so the norm has something."""
        return max(2, int(c * self.alpha + 0.5))

    def groups(self) -> list[str]:
        """The prunable channel groups, in forward order. "stream" is the residual path
        (down.2's output and every block's output must agree); "res.i" is block i's inner
        width."""
        return (["down.0", "down.1", "stream"] + [f"res.{i}" for i in range(self.n_residual)]
                + ["up.0", "up.1"])

    def channels(self) -> dict[str, int]:
        """Each group's channel count: ``widths`` when given, else base_channels x alpha."""
        if self.widths:
            return dict(zip(self.groups(), self.widths, strict=True))
        c1, c2, c3 = (self.ch(c) for c in self.base_channels)
        return dict(zip(self.groups(), [c1, c2, c3] + [c3] * self.n_residual + [c2, c1],
                        strict=True))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["base_channels"] = list(self.base_channels)
        d["widths"] = list(self.widths)
        return d

    def arch(self) -> dict:
        """The card's ``arch``: the defaults of the variant knobs are left out, so cards of
        networks that do not use them stay as they were written."""
        return {"base_channels": list(self.base_channels), "n_residual": self.n_residual,
                **({"blur": self.blur} if self.blur else {}),
                **({"up_blur": self.up_blur} if self.up_blur else {}),
                **({"separable": True} if self.separable else {}),
                **({"resize": self.resize} if self.resize != "none" else {}),
                **({"widths": list(self.widths)} if self.widths else {})}

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        keys = ("n_styles", "alpha", "base_channels", "n_residual", "blur", "up_blur",
                "separable", "resize", "widths")
        return cls(**{k: d[k] for k in keys if k in d})


BLUR_TAPS = {0: (), 3: (1, 2, 1), 5: (1, 4, 6, 4, 1)}  # binomial rows
RESIZE = ("none", "ends", "all")


class Blur(nn.Module):
    """A fixed binomial low-pass, depthwise, reflection-padded: (B, C, H, W) -> same shape."""

    def __init__(self, channels: int, taps: int):
        super().__init__()
        row = torch.tensor(BLUR_TAPS[taps], dtype=torch.float32)
        k = torch.outer(row, row) / row.sum() ** 2  # (taps, taps), sums to 1
        # Not persistent: a constant of the architecture, so checkpoints of networks with and
        # without it hold the same tensors and one can start from the other.
        self.register_buffer("kernel", k.expand(channels, 1, taps, taps).clone(),
                             persistent=False)
        self.pad = nn.ReflectionPad2d(taps // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.kernel.to(x.dtype), groups=x.shape[1])


class SeparableConv(nn.Module):
    """Depthwise k x k (per input channel) then pointwise 1 x 1: (B, Cin, H, W) -> (B, Cout,
    H', W'). No norm between the two, so a dense kernel factorises into it (model/surgery.py)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, k, stride, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def conv(cin: int, cout: int, k: int, stride: int = 1, separable: bool = False) -> nn.Module:
    return SeparableConv(cin, cout, k, stride) if separable and k > 1 else nn.Conv2d(
        cin, cout, k, stride)


class Halve(nn.Module):
    """Halve the photo: (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)), half-resolution pixel i
    centred on input pixels 2i and 2i + 1 (both filters below keep that phase).

    ``taps`` = 0: the 2 x 2 mean, stride 2 (bilinear x 0.5 on even sizes); an odd last row or
    column is paired with itself. Exactly what every ``resize`` network without ``blur`` was
    trained with.

    ``taps`` = 3 or 5 (the alias-free form): the 2-tap box convolved with the binomial row of
    ``Blur`` ([1, 3, 3, 1] / 8 or [1, 5, 10, 10, 5, 1] / 32 per axis), i.e. ``Blur`` then the
    2 x 2 mean, folded into one strided depthwise conv (one pass over the full-resolution
    photo). Why not the box alone: a 1-px move of the photo is a half-pixel move of the halved
    image, and the box passes content above the new Nyquist (1/4 cycle per input pixel) at up
    to cos(pi/4) = 0.71, which the stride folds back as a pattern that changes with the
    phase, so the body sees a different picture at every 1-px step. The binomial's response
    cos(pi f)^(taps) is 0.35 there (3 taps) and falls faster, so the halved image moves
    smoothly with the photo. Reflection-padded, as ``Blur``.
    """

    def __init__(self, channels: int = 3, taps: int = 0):
        super().__init__()
        row = torch.tensor(BLUR_TAPS[taps] or (1,), dtype=torch.float32)
        row = F.conv1d(row[None, None], torch.ones(1, 1, 2), padding=1)[0, 0]  # * [1, 1]
        k = torch.outer(row, row) / row.sum() ** 2  # (taps + 1, taps + 1), sums to 1
        self.register_buffer("kernel", k.expand(channels, 1, *k.shape).clone(),
                             persistent=False)
        # Output i reads input 2i - taps // 2 .. 2i + 1 + taps // 2: one more row/column
        # after the image than before it, which also makes ceil(H/2) rows for odd H.
        a = taps // 2
        self.pad = (nn.ReflectionPad2d((a, a + 1, a, a + 1)) if taps
                    else nn.ReplicationPad2d((0, 1, 0, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.kernel.to(x.dtype), stride=2, groups=x.shape[1])


class NormStats:
    """The CIN statistics of one forward pass, collected and optionally replaced.

    ``given`` (B, S) holds, per CIN layer in forward order, the channel means (C) then the
    channel variances (C); ``use`` (B, 1) blends: statistic = use * given + (1 - use) *
    computed. use = 0 is plain instance norm, use = 1 takes the given statistics exactly
    (a product with 0 or 1 is exact, so both ends lose nothing to rounding). ``computed``
    collects the layer's own (mean, var) in the same layout; ``packed()`` concatenates it.
    """

    def __init__(self, given: torch.Tensor | None = None, use: torch.Tensor | None = None):
        self.given, self.use = given, use
        self.offset = 0
        self.computed: list[torch.Tensor] = []

    def exchange(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = mean.shape[1]  # mean, var: (B, C)
        self.computed += [mean, var]
        lo, self.offset = self.offset, self.offset + 2 * c
        if self.given is None:
            return mean, var
        use = self.use if self.use is not None else torch.ones_like(self.given[:, :1])
        g_mean, g_var = self.given[:, lo:lo + c], self.given[:, lo + c:lo + 2 * c]
        return use * g_mean + (1 - use) * mean, use * g_var + (1 - use) * var

    def packed(self) -> torch.Tensor:
        return torch.cat(self.computed, dim=1)  # (B, S)


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose affine (γ, β) is `weights @ table`, one table row per style."""

    def __init__(self, channels: int, n_styles: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(n_styles, channels))  # (N, C)
        self.beta = nn.Parameter(torch.zeros(n_styles, channels))  # (N, C)

    def forward(self, x: torch.Tensor, w: torch.Tensor,
                stats: NormStats | None = None) -> torch.Tensor:
        # x: (B, C, H, W), w: (B, N). Plain Mul/Add after a scale-free norm keeps the ONNX
        # graph importable by TensorRT (its instance-norm plugin wants constant γ/β).
        gamma, beta = w @ self.gamma, w @ self.beta  # (B, C) each
        if stats is None:  # training and the stats-free export: the fused op
            x = F.instance_norm(x, eps=self.eps)
            return x * gamma[:, :, None, None] + beta[:, :, None, None]
        # The same normalisation spelled out, so the statistics can be read and replaced.
        # Centred variance (not E[x²] - E[x]²): no cancellation, also in fp16 engines.
        mean = x.mean(dim=(2, 3))  # (B, C)
        var = (x - mean[:, :, None, None]).square().mean(dim=(2, 3))  # (B, C), biased
        mean, var = stats.exchange(mean, var)
        # Folded into one scale and shift per channel: two full-size passes (Mul, Add).
        scale = gamma * torch.rsqrt(var + self.eps)  # (B, C)
        shift = beta - mean * scale
        return x * scale[:, :, None, None] + shift[:, :, None, None]


class ConvCIN(nn.Module):
    """Reflection pad -> conv -> CIN -> (ReLU). ``upsample`` does nearest x2 first (then the
    ``up_blur`` low-pass); ``blur`` low-passes the input of a strided conv."""

    def __init__(self, cin, cout, k, n_styles, stride=1, upsample=False, relu=True, blur=0,
                 separable=False, up_blur=0):
        super().__init__()
        self.upsample, self.relu = upsample, relu
        self.blur = (Blur(cin, blur) if blur and stride > 1
                     else Blur(cin, up_blur) if up_blur and upsample else None)
        # Nearest x2 then the 5-tap low-pass is bilinear x2 then [1, 2, 1] (5 = 3 * 3):
        # the rest of that low-pass, run after the bilinear Resize.
        self.after_bilinear = Blur(cin, 3) if upsample and up_blur == 5 else None
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv = conv(cin, cout, k, stride, separable)
        self.norm = ConditionalInstanceNorm(cout, n_styles)

    def forward(self, x: torch.Tensor, w: torch.Tensor,
                stats: NormStats | None = None) -> torch.Tensor:
        taps = 0 if self.blur is None else self.blur.kernel.shape[-1]
        if self.upsample and taps:
            # Nearest x2 then the reflection-padded [1, 2, 1] low-pass is exactly bilinear x2
            # (half-pixel centres, edges clamped): one Resize instead of Resize + Pad + a
            # depthwise Conv (and the layout changes around them) in ONNX Runtime. The 5-tap
            # low-pass is [1, 2, 1] twice, and reflection padding commutes with a symmetric
            # kernel, so bilinear x2 then a 3-tap pass is it exactly, on 9 taps, not 25.
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            if self.after_bilinear is not None:
                x = self.after_bilinear(x)
            x = self.conv(self.pad(x))
        elif taps and not self.upsample:
            x = self._blurred_conv(x)
        else:
            if self.upsample:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # no transposed convs
            if self.blur is not None:
                x = self.blur(x)
            x = self.conv(self.pad(x))
        x = self.norm(x, w, stats)
        return F.relu(x) if self.relu else x

    def _blurred_conv(self, x: torch.Tensor) -> torch.Tensor:
        """conv(pad(blur(x))) as one strided conv with the low-pass folded into its kernel:
        (k + taps - 1)² taps on a wider reflection pad. Exact, borders included: the blur of
        a reflection-extended image is the reflection-extended blur, as the kernel is
        symmetric. It saves the full-resolution Pad + depthwise Conv pass."""
        conv = self.conv.depthwise if isinstance(self.conv, SeparableConv) else self.conv
        wt = conv.weight  # (Cout, Cin / groups, k, k)
        t, k, c = self.blur.kernel.shape[-1], wt.shape[-1], wt.shape[1]
        b = self.blur.kernel[:c].to(x.dtype)  # (c, 1, t, t), symmetric: no flip needed
        # The weight goes in as it is (no reshape), so the exported graph keeps it under its
        # parameter's name (model/checkpoint.py's load_generator reads it back); ONNX Runtime
        # and OpenVINO fold this constant conv when they load the graph.
        folded = F.conv2d(wt, b, padding=t - 1, groups=c)  # (Cout, Cin / groups, k+t-1, k+t-1)
        p = k // 2 + t // 2
        y = F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), folded, conv.bias,
                     stride=conv.stride, groups=conv.groups)
        return self.conv.pointwise(y) if conv is not self.conv else y


class ResidualBlock(nn.Module):
    """x + b(a(x)): a maps the stream's c channels to `inner` (its own, prunable width), b
    back to c."""

    def __init__(self, c: int, n_styles: int, inner: int | None = None, separable=False):
        super().__init__()
        inner = inner or c
        self.a = ConvCIN(c, inner, 3, n_styles, separable=separable)
        self.b = ConvCIN(inner, c, 3, n_styles, relu=False, separable=separable)

    def forward(self, x: torch.Tensor, w: torch.Tensor,
                stats: NormStats | None = None) -> torch.Tensor:
        return x + self.b(self.a(x, w, stats), w, stats)


class Generator(nn.Module):
    """(B, 3, H, W) in [0, 1] + (B, N) style weights -> (B, 3, H, W) in [0, 1].

    Any H, W >= 8 (model/contract.py's MIN_SIDE) works: the two stride-2 convs give
    ceil(H/4), the two upsamplings give 4*ceil(H/4) >= H, and the output is cropped back to
    the input size. With resize the first conv sees ceil(H/2) and a sub-pixel conv makes the
    last factor of 2.
    """

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        n, sep, ch = cfg.n_styles, cfg.separable, cfg.channels()
        c1, c2, c3, u0, u1 = ch["down.0"], ch["down.1"], ch["stream"], ch["up.0"], ch["up.1"]
        ends = cfg.resize == "ends"
        self.halve = Halve(3, cfg.blur) if cfg.resize != "none" else None
        self.down = nn.ModuleList([
            ConvCIN(3, c1, 9, n),  # dense: see the module docstring
            ConvCIN(c1, c2, 3, n, stride=1 if ends else 2, blur=cfg.blur, separable=sep),
            ConvCIN(c2, c3, 3, n, stride=2, blur=cfg.blur, separable=sep),
        ])
        self.res = nn.ModuleList([ResidualBlock(c3, n, ch[f"res.{i}"], sep)
                                  for i in range(cfg.n_residual)])
        self.up = nn.ModuleList([
            ConvCIN(c3, u0, 3, n, upsample=True, separable=sep, up_blur=cfg.up_blur),
            *([] if ends else [ConvCIN(u0, u1, 3, n, upsample=True, separable=sep,
                                       up_blur=cfg.up_blur)]),
        ])
        k = 3 if ends else 9  # "ends": the last conv works on half-resolution features
        self.out_pad = nn.ReflectionPad2d(k // 2)
        r = 1 if self.halve is None else 2  # r * r RGB pixels per position: depth-to-space
        self.out_conv = conv(u0 if ends else u1, 3 * r * r, k, separable=sep)  # no norm
        self.shuffle = nn.PixelShuffle(r) if r > 1 else None
        # The depth-to-space is an upsampling too: each 2 x 2 block of output pixels comes
        # from one half-resolution position, so with nothing after it the output keeps a
        # pattern tied to the coarse grid (and to where the photo sits on it). With up_blur
        # the same low-pass as after the other upsamples runs on the full-resolution logits.
        # Before the sigmoid: conv -> depth-to-space -> low-pass stays one linear map, which
        # fit_head (model/surgery.py) can solve in closed form.
        self.out_blur = Blur(3, cfg.up_blur) if r > 1 and cfg.up_blur else None

    def forward(self, x: torch.Tensor, w: torch.Tensor,
                stats: NormStats | None = None) -> torch.Tensor:
        h, wd = x.shape[-2], x.shape[-1]
        y = self.decode(self.encode(x, w, stats), w, stats)
        return y[:, :, :h, :wd]  # (B, 3, H, W)

    def encode(self, x: torch.Tensor, w: torch.Tensor,
               stats: NormStats | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> the features after the residual blocks, (B, c3, ceil(H/g),
        ceil(W/g)), g = grid(): what the feature-level temporal loss compares
        (training/temporal.py)."""
        y = self.halve(x) if self.halve is not None else x
        for layer in self.down:
            y = layer(y, w, stats)
        for block in self.res:
            y = block(y, w, stats)
        return y

    def decode(self, y: torch.Tensor, w: torch.Tensor,
               stats: NormStats | None = None) -> torch.Tensor:
        """Features (B, c3, h, w) -> (B, 3, g * h, g * w) in [0, 1], g = grid(), before the
        crop to the input size."""
        for layer in self.up:
            y = layer(y, w, stats)  # (B, u1, g/r * h, g/r * w) after the last
        y = self.out_conv(self.out_pad(y))  # (B, 3 * r * r, g/r * h, g/r * w)
        if self.shuffle is not None:
            y = self.shuffle(y)  # (B, 3, g * h, g * w)
        if self.out_blur is not None:
            y = self.out_blur(y)
        return torch.sigmoid(y)  # squash into [0, 1]

    @torch.no_grad()
    def randomize_styles(self, std: float = 0.5) -> Generator:
        """γ ~ N(1, std), β ~ N(0, std): visibly different, untrained styles for tests,
        benchmarks and demos (uses torch's global RNG: seed it first)."""
        for name, p in self.named_parameters():
            if name.endswith("gamma"):
                p.normal_(1.0, std)
            elif name.endswith("beta"):
                p.normal_(0.0, std)
        return self

    def norm_channels(self) -> list[int]:
        """Channels of every CIN layer in forward order (module order is forward order)."""
        return [m.gamma.shape[1] for m in self.modules()
                if isinstance(m, ConditionalInstanceNorm)]

    def stats_size(self) -> int:
        return 2 * sum(self.norm_channels())  # a mean and a variance per channel

    def receptive_radius(self) -> int:
        """Input pixels on each side that can affect an output pixel (an upper bound).

        Summed from the output back: a k×k conv at a layer whose pixels are s input pixels
        apart reaches (k // 2) * s further; a nearest x2 upsample from spacing s can shift
        the reach by up to one coarse pixel, s. A tile whose kept part has at least this
        many real pixels of context on every side computes that part as the whole image
        would (given the same statistics). tests/service/test_tiling.py checks it is not too small.
        With resize = "all" every layer's pixels are twice as far apart (s = 2), and an output
        pixel sits up to one pixel from its half-resolution position, as does the 2x2 mean's
        input: s - 1 more. With "ends" the layers between the two stride-2 steps move. The
        alias-free ends of a resize network add blur // 2 (the halving's wider filter) and
        up_blur // 2 (the low-pass after the depth-to-space, at spacing 1).
        """
        ends = 0 if self.cfg.resize == "none" else self.cfg.blur // 2 + self.cfg.up_blur // 2
        if self.cfg.resize == "ends":
            r = 1 + 2  # depth-to-space slack, out_conv 3x3 at spacing 2
            r += 2 + 4  # up[0]: 3x3 at spacing 2 + upsample slack (one quarter-res pixel)
            r += (self.cfg.up_blur // 2) * 2  # its low-pass after the upsample, at spacing 2
            r += 2 * self.cfg.n_residual * 4  # two 3x3 convs per block at spacing 4
            r += 2 + (self.cfg.blur // 2) * 2  # down[2] and its low-pass, at spacing 2
            r += 2 + 8 + 1  # down[1] (3x3, stride 1), down[0] (9x9) at spacing 2, the mean
            return r + ends
        s = 2 if self.cfg.resize == "all" else 1  # input pixels per pixel of the finest layers
        body = 4  # out_conv, 9x9 at spacing 1
        body += (1 + 2) + (2 + 4)  # up[1], up[0]: a 3x3 conv at spacing 1 / 2 + upsample slack
        body += 2 * self.cfg.n_residual * 4  # two 3x3 convs per block at spacing 4
        body += 2 + 1 + 4  # down[2] (3x3 at 2), down[1] (3x3 at 1), down[0] (9x9 at 1)
        body += (self.cfg.blur // 2) * (2 + 1)  # the low-passes before down[2] and down[1]
        body += (self.cfg.up_blur // 2) * (1 + 2)  # the low-passes after the upsamples
        return s * body + (s - 1) + ends

    def min_side(self) -> int:
        """The smallest input side the reflection pads allow (the 9x9 pad needs 5 px), which
        the service pads smaller images up to: twice the standard when the input is halved."""
        return MIN_SIDE * (1 if self.halve is None else 2)

    def grid(self) -> int:
        """Tile origins must sit on this many input pixels (the stride of the coarsest
        layer): two stride-2 convs, or one and the halving ("ends"), or both and the halving."""
        return 8 if self.cfg.resize == "all" else 4


def to_float_chw(image: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    return image.permute(0, 3, 1, 2).to(torch.float32) / 255.0


def to_uint8_hwc(y: torch.Tensor) -> torch.Tensor:
    """float (B, 3, H, W) in [0, 1] -> uint8 (B, H, W, 3), rounded."""
    return torch.clamp(torch.round(y * 255.0), 0.0, 255.0).to(torch.uint8).permute(0, 2, 3, 1)


class UInt8Generator(nn.Module):
    """What is exported: uint8 RGB HWC batches in and out, conversion inside the graph.

    The service then hands Pillow's array straight in and the output straight to the encoder.
    """

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        return to_uint8_hwc(self.generator(to_float_chw(image), style_weights))


class UInt8StatsGenerator(UInt8Generator):
    """The exported graph with CIN statistics in and out (tiled inference).

    norm_stats (B, S) float32 and use_stats (B, 1) float32 in (see NormStats); out, besides
    the image, computed_stats (B, S): the statistics this pass computed itself.
    """

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor,  # type: ignore[override]
                norm_stats: torch.Tensor, use_stats: torch.Tensor):
        stats = NormStats(norm_stats, use_stats)
        y = self.generator(to_float_chw(image), style_weights, stats)
        return to_uint8_hwc(y), stats.packed()  # (B, H, W, 3), (B, S)


def one_hot(index: int | list[int], n_styles: int, device=None) -> torch.Tensor:
    idx = torch.as_tensor([index] if isinstance(index, int) else index, device=device)
    return F.one_hot(idx, n_styles).to(torch.float32)  # (B, N)
