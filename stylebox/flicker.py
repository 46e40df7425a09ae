"""`stylebox flicker`: how much a model flickers, on clips made from photos with known motion.

    stylebox flicker ../shared/data/eval-photos --model models/stylebox-a0.25.onnx \\
        --photos 3 --frames 3 --carry 0.9 --report docs/flicker.md \\
        --figure docs/flicker.png --strip docs/flicker-strip.jpg
    stylebox flicker ../shared/data/eval-photos --styles candy,udnie --frames 16 \\
        --motions pan4,object,noise --carry 0.9,0.5 --codec h264 --no-vgg

Every photo becomes one clip per motion, W x H frames (default 512x384) cut from the photo
(scaled up first where it is too small for the clip; never down): pans of 1, 2 and 4 px per
frame (integer crops: exact), a zoom of 1 % per frame (each frame resampled with Lanczos
from a larger region of the photo, so no frame is an upscaled copy of another), a rotation of
0.5 degrees per frame about the centre (bicubic, at the photo's scale), a patch moving 4 px
right and 2 px down per frame over a still background (occlusion), and a still scene with
fresh Gaussian noise of sigma 2 grey levels per frame (sensor noise). For every pair of
frames the tool knows where each pixel of frame t+1 was in frame t and which pixels are
visible in both (disoccluded pixels, and pixels that come from outside frame t, are left
out), so no optical flow is estimated.

Warping error of a pair: mean over the pixels visible in both frames and at least --margin
px inside both frames' borders, and over the R, G and B channels, of |warp(S_t) - S_t+1| in
grey levels (0-255), where warp samples S_t bilinearly at each pixel's position in frame t
(exact for integer motion). A clip's figure is the mean over its pairs; a style's, the mean
over photos. The same figure for the input frames is the floor the motion itself sets (0 for
pans and the patch, the resampling for zoom and rotation, the noise for the still scene).
With --carry M the frames also run through `StreamStylizer` carrying the conditional-instance-
norm statistics with momentum M (service/stability.py); frame by frame always runs too. A
carried stream needs frames to settle (frame 1 runs on frame 0's statistics as they are):
--frames 16 shows it; the CSV's per_pair column has each pair's figure. With
--codec h264 the stylized and the input frames are also encoded with libx264 (yuv420p) and
decoded before measuring. The VGG style and content losses of training (as `stylebox eval`
scores them) are computed on the last frame of each --vgg-motions clip, so blurring cannot
pass for stability.
"""

from __future__ import annotations

import csv
import io
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from stylebox.errors import UserError, doc_parser, need_file
from stylebox.report import write_between
from stylebox.service import video
from stylebox.service.backends import open_engine
from stylebox.service.engine import Engine
from stylebox.service.settings import EngineName, Precision, Settings, choices
from stylebox.service.stability import StabilityConfig, StreamStylizer

# motion -> its column title. The per-frame amounts are fixed so that figures compare
# across runs and models; --motions picks among them.
MOTIONS: dict[str, str] = {
    "pan1": "pan 1 px", "pan2": "pan 2 px", "pan4": "pan 4 px", "zoom": "zoom 1 %",
    "rotate": "rotate 0.5°", "object": "moving patch", "noise": "still + noise σ2",
}
PAN = {"pan1": 1, "pan2": 2, "pan4": 4}  # px per frame, content moving left
ZOOM = 1.01  # scale per frame (zooming in)
ROTATE_DEG = 0.5  # degrees per frame about the frame's centre
OBJECT_STEP = (2, 4)  # (dy, dx) px per frame of the pasted patch
OBJECT_FRACTION = 4  # the patch is W/4 x H/4
NOISE_SIGMA = 2.0  # grey levels, fresh per frame
# H.264 round trip: what POST /videos writes (service/video.py's CRF and preset);
# parameters of h264_round_trip, so another encoding can be measured.
H264_CRF = video.CRF
H264_PRESET = video.PRESET
CSV_FIELDS = ["photo", "motion", "style", "carry", "codec", "output", "input", "pairs",
              "per_pair"]
VGG_FIELDS = ["photo", "motion", "style", "carry", "style_loss", "content_loss"]
Size = tuple[int, int]  # (W, H)


class FlickerError(UserError):
    """A bad flicker argument: an unknown style or motion, a size the clips cannot have, ..."""


# -- clips with known motion -------------------------------------------------------------------

@dataclass(frozen=True)
class Warp:
    """Where each pixel of frame t+1 was in frame t, and which pixels count.

    src: float64 (2, H, W), the (y, x) position in frame t of frame t+1's pixel (pixel
    centres at integer coordinates); mask: bool (H, W), visible in both frames and inside
    the interior of both."""

    src: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Clip:
    motion: str
    frames: list[np.ndarray]  # uint8 (H, W, 3) each
    warps: list[Warp]  # len(frames) - 1: frame t -> t+1


def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)  # (H, W) each
    return ys, xs


def _mask(src_y: np.ndarray, src_x: np.ndarray, visible: np.ndarray, margin: int) -> np.ndarray:
    """visible, and at least `margin` px inside the borders of frame t+1 and of frame t."""
    h, w = visible.shape
    inner = np.zeros((h, w), bool)
    inner[margin:h - margin, margin:w - margin] = True
    inside_t = (src_y >= margin) & (src_y <= h - 1 - margin) & \
        (src_x >= margin) & (src_x <= w - 1 - margin)
    return visible & inner & inside_t


def _affine_warp(w: int, h: int, m: np.ndarray, margin: int) -> Warp:
    """A warp src = c + m @ (p - c) about the frame's centre c (pixel-index coordinates)."""
    ys, xs = _grid(w, h)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    dx, dy = xs - cx, ys - cy
    sx = cx + m[0, 0] * dx + m[0, 1] * dy
    sy = cy + m[1, 0] * dx + m[1, 1] * dy
    return Warp(np.stack([sy, sx]), _mask(sy, sx, np.ones((h, w), bool), margin))


def _shift_warp(w: int, h: int, dy: int, dx: int, margin: int,
                visible: np.ndarray | None = None) -> Warp:
    ys, xs = _grid(w, h)
    sy, sx = ys + dy, xs + dx
    vis = np.ones((h, w), bool) if visible is None else visible
    return Warp(np.stack([sy, sx]), _mask(sy, sx, vis, margin))


def stage_scale(pw: int, ph: int, size: Size, frames: int, motions: list[str]) -> float:
    """How much a pw x ph photo must be enlarged (>= 1) for every clip of `motions` to fit."""
    w, h = size
    need = [(w, h)]
    for m in motions:
        if m in PAN:
            need.append((w + PAN[m] * (frames - 1), h))
        elif m == "zoom":  # the last frame takes exactly W x H photo pixels
            z = ZOOM ** (frames - 1)
            need.append((w * z, h * z))
        elif m == "rotate":  # the bounding box of the frame at the largest angle, + bicubic
            a = math.radians(ROTATE_DEG * (frames - 1))
            c, s = abs(math.cos(a)), abs(math.sin(a))
            need.append((w * c + h * s + 4, w * s + h * c + 4))
    return max(1.0, *(nw / pw for nw, _ in need), *(nh / ph for _, nh in need))


def make_clips(photo: Image.Image, size: Size, frames: int, motions: list[str], margin: int,
               seed: int = 0) -> dict[str, Clip]:
    """One clip of `frames` frames per motion, all from the centre of `photo` (RGB)."""
    w, h = size
    # Scaled for every motion, run or not: a clip does not depend on the others chosen.
    s = stage_scale(photo.width, photo.height, size, frames, list(MOTIONS))
    if s > 1:  # too small for the clips: enlarge once; every frame is then cut from this
        photo = photo.resize((math.ceil(photo.width * s), math.ceil(photo.height * s)),
                             Image.Resampling.LANCZOS)
    stage = np.asarray(photo)  # (Hs, Ws, 3)
    hs, ws = stage.shape[:2]
    cx, cy = ws / 2, hs / 2  # the photo's centre, in edge coordinates (Pillow's)
    y0 = (hs - h) // 2
    x0c = (ws - w) // 2
    still = np.ascontiguousarray(stage[y0:y0 + h, x0c:x0c + w])
    out: dict[str, Clip] = {}
    for m in motions:
        if m in PAN:
            v = PAN[m]
            x0 = (ws - w - v * (frames - 1)) // 2
            fr = [np.ascontiguousarray(stage[y0:y0 + h, x0 + v * t:x0 + v * t + w])
                  for t in range(frames)]
            out[m] = Clip(m, fr, [_shift_warp(w, h, 0, v, margin)] * (frames - 1))
        elif m == "zoom":
            fr = []
            for t in range(frames):
                k = ZOOM ** (frames - 1 - t)  # photo pixels per frame pixel: >= 1, shrinking
                box = (cx - w * k / 2, cy - h * k / 2, cx + w * k / 2, cy + h * k / 2)
                fr.append(np.asarray(photo.resize((w, h), Image.Resampling.LANCZOS, box=box)))
            mat = np.eye(2) / ZOOM  # frame t+1's pixel p was at c + (p - c) / z in frame t
            out[m] = Clip(m, fr, [_affine_warp(w, h, mat, margin)] * (frames - 1))
        elif m == "rotate":
            fr = []
            for t in range(frames):
                a = math.radians(ROTATE_DEG * t)
                co, si = math.cos(a), math.sin(a)
                # frame edge coordinates (x, y) -> photo: C + R(a) (p - c), c the frame centre
                data = (co, -si, cx - co * w / 2 + si * h / 2,
                        si, co, cy - si * w / 2 - co * h / 2)
                fr.append(np.asarray(photo.transform((w, h), Image.Transform.AFFINE, data,
                                                     resample=Image.Resampling.BICUBIC)))
            a = math.radians(ROTATE_DEG)  # frame t+1's p was at c + R(step) (p - c) in frame t
            mat = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            out[m] = Clip(m, fr, [_affine_warp(w, h, mat, margin)] * (frames - 1))
        elif m == "object":
            out[m] = _object_clip(still, frames, margin)
        elif m == "noise":
            rng = np.random.default_rng(seed)
            fr = [np.clip(np.round(still + rng.normal(0, NOISE_SIGMA, still.shape)), 0, 255
                          ).astype(np.uint8) for _ in range(frames)]
            out[m] = Clip(m, fr, [_shift_warp(w, h, 0, 0, margin)] * (frames - 1))
        else:
            raise FlickerError(f"unknown motion {m!r} ({', '.join(MOTIONS)})")
    return out


def _object_clip(still: np.ndarray, frames: int, margin: int) -> Clip:
    """A W/4 x H/4 patch (the still's top-left corner, mirrored) moving over the still."""
    h, w = still.shape[:2]
    ph, pw = h // OBJECT_FRACTION, w // OBJECT_FRACTION
    dy, dx = OBJECT_STEP
    patch = still[:ph, :pw][:, ::-1]
    # Start so that the whole path stays inside the frame and is centred on it.
    py0 = max(0, (h - ph - dy * (frames - 1)) // 2)
    px0 = max(0, (w - pw - dx * (frames - 1)) // 2)
    if py0 + ph + dy * (frames - 1) > h or px0 + pw + dx * (frames - 1) > w:
        raise FlickerError(f"{frames} frames move the patch out of a {w}x{h} frame; "
                           "use fewer --frames or a larger --size")
    fr, boxes = [], []
    for t in range(frames):
        y, x = py0 + dy * t, px0 + dx * t
        f = still.copy()
        f[y:y + ph, x:x + pw] = patch
        fr.append(f)
        boxes.append((y, x))
    warps = []
    for (ya, xa), (yb, xb) in zip(boxes, boxes[1:], strict=False):
        in_a = np.zeros((h, w), bool)
        in_a[ya:ya + ph, xa:xa + pw] = True
        in_b = np.zeros((h, w), bool)
        in_b[yb:yb + ph, xb:xb + pw] = True
        ys, xs = _grid(w, h)
        # Patch pixels come from the patch one step back; the rest of the background stays
        # put, except where the patch covered it in frame t (disoccluded: not visible there).
        sy = np.where(in_b, ys - dy, ys)
        sx = np.where(in_b, xs - dx, xs)
        visible = in_b | ~in_a
        warps.append(Warp(np.stack([sy, sx]), _mask(sy, sx, visible, margin)))
    return Clip("object", fr, warps)


# -- the measure -------------------------------------------------------------------------------

def sample(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """float32 (K, 3): `img` (H, W, 3) sampled bilinearly at the (K,) positions; positions
    with integer coordinates read the pixel exactly."""
    h, w = img.shape[:2]
    y0 = np.clip(np.floor(ys).astype(np.int64), 0, h - 1)
    x0 = np.clip(np.floor(xs).astype(np.int64), 0, w - 1)
    fy = (ys - y0).astype(np.float32)[:, None]
    fx = (xs - x0).astype(np.float32)[:, None]
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    f = img.astype(np.float32)
    top = f[y0, x0] * (1 - fx) + f[y0, x1] * fx
    bottom = f[y1, x0] * (1 - fx) + f[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def warp_error(prev: np.ndarray, nxt: np.ndarray, warp: Warp) -> float:
    """Mean |warp(prev) - next| over the warp's mask and the 3 channels, in grey levels."""
    ys, xs = warp.src[0][warp.mask], warp.src[1][warp.mask]
    if ys.size == 0:
        raise FlickerError("no pixel is visible in both frames: lower --margin")
    return float(np.abs(sample(prev, ys, xs) - nxt[warp.mask].astype(np.float32)).mean())


def pair_errors(frames: list[np.ndarray], warps: list[Warp]) -> list[float]:
    """The warping error of each pair (t, t+1) of a clip."""
    return [warp_error(a, b, wp) for a, b, wp in zip(frames, frames[1:], warps, strict=False)]


def clip_error(frames: list[np.ndarray], warps: list[Warp]) -> float:
    """The mean warping error over a clip's pairs."""
    return float(np.mean(pair_errors(frames, warps)))


def diff_map(prev: np.ndarray, nxt: np.ndarray, warp: Warp) -> np.ndarray:
    """float32 (H, W): |warp(prev) - next| averaged over channels; NaN outside the mask."""
    out = np.full(warp.mask.shape, np.nan, np.float32)
    ys, xs = warp.src[0][warp.mask], warp.src[1][warp.mask]
    out[warp.mask] = np.abs(sample(prev, ys, xs) - nxt[warp.mask].astype(np.float32)).mean(-1)
    return out


def h264_round_trip(frames: list[np.ndarray], crf: int = H264_CRF, preset: str = H264_PRESET,
                    fps: int = 25) -> list[np.ndarray]:
    """The frames encoded with libx264 (yuv420p, `crf`, `preset`) into MP4 in memory and
    decoded back to uint8 RGB (H, W, 3) each. W and H must be even (4:2:0)."""
    try:
        import av
    except ImportError:
        raise FlickerError("--codec h264 needs PyAV: pip install av") from None
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise FlickerError(f"--codec h264 needs an even frame size, got {w}x{h}")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as box:
        stream = box.add_stream(video.CODEC, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, video.PIX_FMT
        stream.options = {"crf": str(crf), "preset": preset}
        for f in frames:
            box.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        box.mux(stream.encode())
    buf.seek(0)
    with av.open(buf) as box:
        out = [fr.to_ndarray(format="rgb24") for fr in box.decode(video=0)]
    if len(out) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(out)} of {len(frames)} frames")
    return out


def stylize_clip(engine: Engine, frames: list[np.ndarray], weights: np.ndarray,
                 carry: float) -> list[np.ndarray]:
    """The frames in order through one StreamStylizer (carry 0: each frame on its own)."""
    stream = StreamStylizer(engine, StabilityConfig(momentum=carry))
    return [stream(f, weights) for f in frames]


# -- the run -----------------------------------------------------------------------------------

@dataclass
class Row:
    photo: str
    motion: str
    style: str
    carry: float
    codec: str  # "none" or "h264"
    output: float  # warping error of the stylized frames, grey levels
    input: float  # the same for the input frames
    pairs: int
    per_pair: str = ""  # the output's figure of each pair in order, space-separated


@dataclass
class VggRow:
    photo: str
    motion: str
    style: str
    carry: float
    style_loss: float
    content_loss: float


@dataclass
class Options:
    size: Size = (512, 384)
    frames: int = 8
    photos: int = 2
    motions: tuple[str, ...] = tuple(MOTIONS)
    carry: tuple[float, ...] = ()
    codec: str = "none"
    margin: int = 16
    seed: int = 0
    vgg_motions: tuple[str, ...] = ("pan1",)
    strip_style: str | None = None


class VggScorer:
    """training/eval.py's style and content losses for one style list (needs torch)."""

    def __init__(self, engine: Engine, names: list[str], config: str, data_root: str | None,
                 styles_dir: str | None, sets: list[str]) -> None:
        import torch

        from stylebox.training.config import TrainConfig
        from stylebox.training.data import load_style_images
        from stylebox.training.eval import find_style_images, to_tensor
        from stylebox.training.losses import PerceptualLoss

        need_file(config, "config")
        cfg = TrainConfig.load(config, sets)
        if data_root:
            cfg = cfg.replace(data_root=data_root)
        cfg.check_data_root(([cfg.vgg_weights] if cfg.vgg_weights != "torchvision" else [])
                            + ["styles"])
        paths = find_style_images(names, cfg, {}, styles_dir, engine.card)
        torch.manual_seed(0)
        self.loss = PerceptualLoss.from_config(cfg, measure=True).cpu()
        self.loss.set_style_targets(load_style_images([paths[n] for n in names],
                                                      cfg.style_size))
        self.names, self._to_tensor, self._torch = names, to_tensor, torch

    def reference(self, rgb: np.ndarray) -> dict:
        with self._torch.no_grad():
            return self.loss.vgg(self._to_tensor(rgb))

    def __call__(self, out: np.ndarray, ref: dict, style: str) -> tuple[float, float]:
        with self._torch.no_grad():
            feats = self.loss.vgg(self._to_tensor(out))
            idx = self._torch.tensor([self.names.index(style)])
            return (self.loss.style_loss(feats, idx).item(),
                    self.loss.content_loss(feats, ref).item())


def pick_photos(files: list[Path], n: int) -> list[Path]:
    """n photos spread evenly over the sorted list (the first, the last, between)."""
    if n >= len(files):
        return files
    if n == 1:
        return files[:1]
    return [files[round(i * (len(files) - 1) / (n - 1))] for i in range(n)]


def load_photo(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def run(engine: Engine, files: list[Path], styles: list[str], opt: Options,
        vgg: VggScorer | None = None, log: Callable[[str], None] = lambda s: None,
        ) -> tuple[list[Row], list[VggRow], dict]:
    """Every photo x motion x style x mode; rows, VGG rows and the strip's frames."""
    rows: list[Row] = []
    vrows: list[VggRow] = []
    modes = [0.0, *opt.carry]
    strip: dict = {}
    strip_style = opt.strip_style or styles[0]
    for p, path in enumerate(files):
        clips = make_clips(load_photo(path), opt.size, opt.frames, list(opt.motions),
                           opt.margin, seed=opt.seed + p)
        for motion, clip in clips.items():
            t0 = time.perf_counter()
            inputs = {"none": clip.frames}
            if opt.codec == "h264":
                inputs["h264"] = h264_round_trip(clip.frames)
            in_err = {c: clip_error(f, clip.warps) for c, f in inputs.items()}
            ref = vgg.reference(clip.frames[-1]) if vgg and motion in opt.vgg_motions else None
            for style in styles:
                weights = engine.one_hot(engine.style_names.index(style))
                for carry in modes:
                    out = stylize_clip(engine, clip.frames, weights, carry)
                    outs = {"none": out}
                    if opt.codec == "h264":
                        outs["h264"] = h264_round_trip(out)
                    for codec, frames in outs.items():
                        errs = pair_errors(frames, clip.warps)
                        rows.append(Row(path.name, motion, style, carry, codec,
                                        float(np.mean(errs)), in_err[codec], len(errs),
                                        " ".join(f"{e:.3f}" for e in errs)))
                    if ref is not None:
                        sl, cl = vgg(out[-1], ref, style)
                        vrows.append(VggRow(path.name, motion, style, carry, sl, cl))
                    if p == 0 and style == strip_style and \
                            (motion == "pan1" or (motion == "pan4" and carry == 0)):
                        strip[(motion, carry)] = (clip, out)
            log(f"{path.name} {motion}: {len(styles)} styles x {len(modes)} modes in "
                f"{time.perf_counter() - t0:.1f} s")
    return rows, vrows, strip


# -- tables, figure, strip ---------------------------------------------------------------------

def mode_name(carry: float) -> str:
    return "frame by frame" if carry == 0 else f"carry {carry:g}"


def aggregate(rows: list[Row]) -> dict[tuple, float]:
    """(style, carry, codec, motion) -> the mean over photos of the output figure; the input
    frames' figure under style "(input)", carry 0 (each photo's clip counted once)."""
    outs: dict[tuple, list[float]] = {}
    ins: dict[tuple, dict[str, float]] = {}
    for r in rows:
        outs.setdefault((r.style, r.carry, r.codec, r.motion), []).append(r.output)
        ins.setdefault(("(input)", 0.0, r.codec, r.motion), {})[r.photo] = r.input
    return {**{k: float(np.mean(v)) for k, v in outs.items()},
            **{k: float(np.mean(list(v.values()))) for k, v in ins.items()}}


def vgg_means(vrows: list[VggRow]) -> dict[tuple[str, float], tuple[float, float]]:
    acc: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for r in vrows:
        acc.setdefault((r.style, r.carry), []).append((r.style_loss, r.content_loss))
    return {k: tuple(np.mean(v, axis=0).tolist()) for k, v in acc.items()}


def table(rows: list[Row], vrows: list[VggRow], styles: list[str]) -> list[str]:
    """The markdown table: one row per style x mode (x codec), one column per motion."""
    agg = aggregate(rows)
    vg = vgg_means(vrows)
    motions = list(dict.fromkeys(r.motion for r in rows))
    modes = list(dict.fromkeys(r.carry for r in rows))
    codecs = list(dict.fromkeys(r.codec for r in rows))
    codec_col = codecs != ["none"]
    head = ["style", "mode", *(["codec"] if codec_col else []),
            *(MOTIONS[m] for m in motions), *(["style loss", "content loss"] if vg else [])]
    lines = ["| " + " | ".join(head) + " |",
             "| " + " | ".join(["---"] * (2 + codec_col) + ["---:"] * (len(head) - 2 - codec_col))
             + " |"]

    def line(style: str, label: str, carry: float, codec: str, bold: bool = False) -> str:
        vals = [f"{agg[(style, carry, codec, m)]:.2f}" for m in motions]
        extra = []
        if vg:
            v = vg.get((style, carry)) if codec == "none" else None
            extra = [f"{v[0]:.4f}", f"{v[1]:.4f}"] if v else ["", ""]
        cells = [label, "" if style == "(input)" else mode_name(carry),
                 *([codec] if codec_col else []), *vals, *extra]
        if bold:
            cells = [f"**{c}**" if c else c for c in cells]
        return "| " + " | ".join(cells) + " |"

    for codec in codecs:
        lines.append(line("(input)", "input frames", 0.0, codec))
    for style in styles:
        for carry in modes:
            for codec in codecs:
                lines.append(line(style, style, carry, codec))
    for carry in modes:  # the mean over the styles
        for codec in codecs:
            for m in motions:
                agg[("(mean)", carry, codec, m)] = float(np.mean(
                    [agg[(s, carry, codec, m)] for s in styles]))
            if vg and codec == "none":
                vg[("(mean)", carry)] = tuple(np.mean([vg[(s, carry)] for s in styles
                                                       if (s, carry) in vg], axis=0).tolist())
            lines.append(line("(mean)", "mean", carry, codec, bold=True))
    return lines


def write_csv(path: Path, fields: list[str], rows: list) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v
                        for k, v in asdict(r).items()})


def figure(rows: list[Row], styles: list[str], path: Path, title: str) -> None:
    """One panel per motion: bars per style, one per mode (no codec), the input's figure as
    a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate([r for r in rows if r.codec == "none"])
    motions = list(dict.fromkeys(r.motion for r in rows))
    modes = list(dict.fromkeys(r.carry for r in rows))
    cols = min(4, len(motions))
    nrow = math.ceil(len(motions) / cols)
    fig, axes = plt.subplots(nrow, cols, figsize=(4.2 * cols, 3.4 * nrow + 0.6), squeeze=False)
    x = np.arange(len(styles))
    bw = 0.8 / len(modes)
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    for i, m in enumerate(motions):
        ax = axes[i // cols][i % cols]
        for j, carry in enumerate(modes):
            ax.bar(x + (j - (len(modes) - 1) / 2) * bw,
                   [agg[(s, carry, "none", m)] for s in styles], bw,
                   label=mode_name(carry), color=colors[j % len(colors)])
        ax.axhline(agg[("(input)", 0.0, "none", m)], color="k", ls="--", lw=1,
                   label="input frames")
        ax.set_title(MOTIONS[m], fontsize=10)
        ax.set_xticks(x, styles, rotation=60, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=8)
        if i % cols == 0:
            ax.set_ylabel("warping error (grey levels)", fontsize=8)
    for k in range(len(motions), nrow * cols):
        axes[k // cols][k % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=len(labels), fontsize=8)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


HEAT_MAX = 48.0  # grey levels that the heat map's brightest colour stands for


def strip_image(strip: dict, style: str, crop: Size = (256, 192)) -> Image.Image:
    """Rows: the 1-px pan in each mode, then the 4-px pan frame by frame (where run).
    Columns: input t, input t+1, stylized t, stylized t+1 and |warp(S_t) - S_t+1| (mean
    over R, G, B; black 0 to white HEAT_MAX grey levels; masked pixels grey), for the last
    pair of the first photo's clip, cut to `crop` at the frame's centre (full resolution)."""
    from matplotlib import colormaps

    cmap = colormaps["inferno"]
    band = 16
    keys = list(strip)
    h, w = strip[keys[0]][0].frames[0].shape[:2]
    cw, ch = min(crop[0], w), min(crop[1], h)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    sheet = Image.new("RGB", (5 * cw, len(keys) * (ch + band)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (motion, carry) in enumerate(keys):
        clip, out = strip[(motion, carry)]
        t = len(clip.frames) - 2
        d = diff_map(out[t], out[t + 1], clip.warps[t])
        rgb = (cmap(np.clip(np.nan_to_num(d, nan=0) / HEAT_MAX, 0, 1))[..., :3] * 255
               ).astype(np.uint8)
        rgb[np.isnan(d)] = 128
        cells = [clip.frames[t], clip.frames[t + 1], out[t], out[t + 1], rgb]
        labels = [f"input t={t}, {MOTIONS[motion]}", f"input t={t + 1}",
                  f"{style} t={t}, {mode_name(carry)}", f"{style} t={t + 1}",
                  f"|warp(S_t) - S_t+1|: 0-{HEAT_MAX:g}, mean {np.nanmean(d):.1f}"]
        y = r * (ch + band) + band
        for c, arr in enumerate(cells):
            sheet.paste(Image.fromarray(np.ascontiguousarray(arr[y0:y0 + ch, x0:x0 + cw])),
                        (c * cw, y))
            draw.text((c * cw + 3, y - band + 2), labels[c], fill=(20, 20, 20))
    return sheet


# -- the command -------------------------------------------------------------------------------

def _size(text: str) -> Size:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise FlickerError(f"--size wants WxH (e.g. 512x384), got {text!r}") from None
    if w < 16 or h < 16:
        raise FlickerError(f"--size must be at least 16x16, got {text!r}")
    return w, h


def _names(text: str | None, valid: list[str], flag: str) -> list[str]:
    if not text:
        return list(valid)
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in valid]
    if unknown or not names:
        raise FlickerError(f"{flag} {', '.join(unknown) or repr(text)}: not one of "
                           f"{', '.join(valid)}")
    return names


def _carries(text: str | None) -> tuple[float, ...]:
    if not text:
        return ()
    out = []
    for part in text.split(","):
        try:
            m = float(part)
        except ValueError:
            raise FlickerError(f"--carry wants momenta in [0, 1) like 0.9,0.5, got {text!r}"
                               ) from None
        if not 0 <= m < 1:
            raise FlickerError(f"--carry momentum must be in [0, 1), got {part}")
        if m > 0 and m not in out:  # 0 is frame by frame, which always runs
            out.append(m)
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox flicker", __doc__)
    p.add_argument("photo_dir", help="folder of photos to make the clips from")
    p.add_argument("--model", default="models/stylebox-a0.25.onnx", help="exported .onnx file")
    p.add_argument("--styles", help="A,B,...: these styles only (default: all)")
    p.add_argument("--photos", type=int, default=2,
                   help="how many photos, spread evenly over the folder's sorted list")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (>= 2)")
    p.add_argument("--motions", help=f"A,B,...: among {', '.join(MOTIONS)} (default: all)")
    p.add_argument("--size", default="512x384", help="frame size WxH")
    p.add_argument("--margin", type=int, default=16,
                   help="px left out at every border of both frames of a pair")
    p.add_argument("--carry", help="M[,M2...]: also run with CIN statistics carried at "
                   "momentum M (StreamStylizer); frame by frame always runs")
    p.add_argument("--codec", choices=["none", "h264"], default="none",
                   help=f"h264: also measure after an H.264 round trip (libx264, yuv420p, "
                   f"CRF {H264_CRF}, preset {H264_PRESET}), inputs too")
    p.add_argument("--report", help="markdown file for the table (between markers; the rest "
                   "of the file is kept); the CSVs go beside it")
    p.add_argument("--section", default="table", help="marker name of the table in --report")
    p.add_argument("--figure", help="PNG: bars per style per motion, output vs input")
    p.add_argument("--strip", help="JPEG: input and stylized frames of the 1-px pan (and the "
                   "4-px pan) and their difference heat map")
    p.add_argument("--strip-style", help="style for --strip (default: the first)")
    p.add_argument("--no-vgg", action="store_true", help="skip the VGG style/content losses")
    p.add_argument("--vgg-motions", default="pan1",
                   help="clips whose last frame VGG scores (comma-separated)")
    p.add_argument("--config", default="configs/default.toml",
                   help="training config: style images, VGG file, layers (as stylebox eval)")
    p.add_argument("--data-root", help="override the config's data_root")
    p.add_argument("--styles-dir", help="folder of style images, as for stylebox eval")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--engine", default="auto", choices=choices(EngineName),
                   help="runtime, as STYLEBOX_ENGINE (default auto: what serve would use)")
    p.add_argument("--precision", default="auto", choices=choices(Precision),
                   help="as STYLEBOX_PRECISION")
    p.add_argument("--providers", default="CPUExecutionProvider",
                   help="ONNX Runtime providers, comma-separated")
    args = p.parse_args(argv)

    size = _size(args.size)
    if args.frames < 2:
        raise FlickerError(f"--frames must be >= 2, got {args.frames}")
    if args.photos < 1:
        raise FlickerError(f"--photos must be >= 1, got {args.photos}")
    if not 0 <= args.margin < min(size) // 2:
        raise FlickerError(f"--margin must be in [0, {min(size) // 2}), got {args.margin}")
    motions = _names(args.motions, list(MOTIONS), "--motions")
    vgg_motions = [] if args.no_vgg else _names(args.vgg_motions, list(MOTIONS), "--vgg-motions")
    carry = _carries(args.carry)
    if args.report and Path(args.report).suffix.lower() != ".md":
        raise FlickerError(f"--report wants a .md file, got {args.report!r}")
    if not Path(args.photo_dir).is_dir():
        raise FlickerError(f"photo folder {args.photo_dir!r} does not exist")
    need_file(args.model, "model file")
    if args.codec == "h264":  # PyAV present, the size even: fail before the long run
        h264_round_trip([np.zeros((size[1], size[0], 3), np.uint8)] * 2)

    from stylebox.training.data import list_photos

    files = pick_photos(list_photos(args.photo_dir), args.photos)
    engine = open_engine(Settings(model_path=args.model, engine=args.engine,
                                  precision=args.precision,
                                  providers=args.providers.split(",")))
    styles = _names(args.styles, engine.style_names, "--styles")
    if args.strip_style and args.strip_style not in styles:
        raise FlickerError(f"--strip-style {args.strip_style!r} is not among the styles run "
                           f"({', '.join(styles)})")
    if carry and not engine.supports_stats:
        raise FlickerError(f"{args.model} was exported without norm statistics: --carry "
                           "needs a model that takes them (re-export it)")
    if args.strip and "pan1" not in motions:
        raise FlickerError("--strip shows the 1-px pan: include pan1 in --motions")
    vgg = None
    if vgg_motions and any(m in motions for m in vgg_motions):
        vgg = VggScorer(engine, styles, args.config, args.data_root, args.styles_dir, [])
    opt = Options(size=size, frames=args.frames, photos=args.photos, motions=tuple(motions),
                  carry=carry, codec=args.codec, margin=args.margin, seed=args.seed,
                  vgg_motions=tuple(vgg_motions), strip_style=args.strip_style)

    t0 = time.perf_counter()
    rows, vrows, strip = run(engine, files, styles, opt, vgg,
                             log=lambda s: print(f"stylebox flicker: {s}", file=sys.stderr))
    seconds = time.perf_counter() - t0
    command = "stylebox flicker " + shlex.join(list(sys.argv[1:] if argv is None else argv))
    names = ", ".join(f.name for f in files) if len(files) <= 4 else "named in the CSV"
    about = (f"`{Path(args.model).name}` on {engine.backend} {engine.precision}; "
             f"{len(files)} photos ({names}), {args.frames} frames "
             f"of {size[0]}x{size[1]} per clip, margin {args.margin} px; warping error in grey "
             "levels (mean |warp(S_t) - S_t+1| over the pixels visible in both frames and "
             "over R, G, B; mean over pairs, then photos)"
             + ("; style/content loss: VGG on the last frame of the "
                f"{', '.join(vgg_motions)} clips" if vrows else "")
             + (f"; h264: libx264 yuv420p CRF {H264_CRF} preset {H264_PRESET}"
                if args.codec == "h264" else "") + f". {seconds:.0f} s.")
    lines = table(rows, vrows, styles)
    print("\n".join(lines))
    written = []
    if args.report:
        report = Path(args.report)
        report.parent.mkdir(parents=True, exist_ok=True)
        base = report.with_name(f"{report.stem}-{args.section}")
        write_csv(base.with_suffix(".csv"), CSV_FIELDS, rows)
        written += [str(report), str(base.with_suffix(".csv"))]
        if vrows:
            vpath = base.with_name(base.name + "-vgg.csv")
            write_csv(vpath, VGG_FIELDS, vrows)
            written.append(str(vpath))
        write_between(report, f"flicker:{args.section}",
                      "\n".join([f"Made by `{command}`: {about}", "", *lines]), title="Flicker")
    if args.figure:
        figure(rows, styles, Path(args.figure),
               f"{Path(args.model).name}: warping error per motion "
               f"({len(files)} photos, {args.frames} frames of {size[0]}x{size[1]})")
        written.append(args.figure)
    if args.strip:
        style = args.strip_style or styles[0]
        Path(args.strip).parent.mkdir(parents=True, exist_ok=True)
        strip_image(strip, style).save(args.strip, quality=90)
        written.append(args.strip)
    print(f"stylebox flicker: {len(files)} photos x {len(motions)} motions x {len(styles)} "
          f"styles x {1 + len(carry)} modes in {seconds:.0f} s"
          + (f" -> {', '.join(written)}" if written else ""))
    return 0
