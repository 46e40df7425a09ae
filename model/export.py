"""ONNX export that checks itself.

The exported graph takes ``image`` uint8 (B, H, W, 3) and ``style_weights`` float32 (B, N)
and returns ``stylized`` uint8 (B, H, W, 3); batch, height and width are dynamic, so one
file serves every size and every blend. The model card rides along in ``metadata_props``.

By default the graph also carries the instance-norm statistics for tiled inference (see
model.network.NormStats). The ports, their dtypes and shapes are model/contract.py's, which
the service checks with the same code. ``norm_stats=False`` exports the older two-input graph
(served with the downscale path).

After writing, the file is run in ONNX Runtime against PyTorch at two sizes other than
the export size (one not divisible by 4) and for a blend, and (with statistics) once more
with use_stats = 1 and statistics taken from another image; the export fails if any output
value differs by more than ``PARITY_MAX_ABS`` grey levels or more than
``PARITY_MAX_FRACTION`` of values differ at all (float rounding flips a few .5 cases).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylebox.errors import UserError
from stylebox.model import contract, lineage
from stylebox.model.card import CARD_KEY, ModelCard
from stylebox.model.network import (
    Generator,
    NormStats,
    UInt8Generator,
    UInt8StatsGenerator,
    to_float_chw,
)

EXPORTERS = ("torchscript", "dynamo")
SAMPLE_SIZE = 128  # px: the photo the page's style previews are made from (service/previews.py)
DEFAULT_EXPORTER = "torchscript"  # fast, clean symbolic shapes, present in torch 2.4 .. 2.14
DEFAULT_OPSET = 17
PARITY_MAX_ABS = 2  # grey levels out of 255
PARITY_MAX_FRACTION = 0.01
# computed_stats, ORT vs PyTorch, measured as the normalisation sees it (stats_error).
STATS_MAX_REL = 1e-3


class ExportError(UserError):
    """The export cannot be made, or the written file fails its parity check."""

    exit_code = 1  # the command's work failed, as for a model that does not load


@dataclass
class ParityCase:
    name: str
    height: int
    width: int
    max_abs: int
    frac_differ: float


def _blend_weights(n: int, batch: int) -> torch.Tensor:
    w = torch.zeros(batch, n)
    w[0, 0] = 1.0  # a pure style
    if batch > 1:
        w[1, :] = torch.linspace(1.0, 2.0, n) / torch.linspace(1.0, 2.0, n).sum()  # a blend
    return w


def _export_graph(
    wrapper: UInt8Generator, path: Path, size: int, n: int, exporter: str, opset: int
) -> None:
    stats = isinstance(wrapper, UInt8StatsGenerator)
    # Batch 2 for the statistics graph: torch.export would pin a batch of 1 (its size-1
    # specialisation meets the (B, 1) x (B, C) broadcast of use_stats).
    batch = 2 if stats else 1
    image = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    weights = _blend_weights(n, batch)
    args: tuple = (image, weights)
    size = wrapper.generator.stats_size() if stats else 0
    if stats:
        args += (torch.zeros(batch, size), torch.zeros(batch, 1))
    inputs, outputs = contract.ports(n, size)  # in the order of the wrapper's arguments, results
    names = {"input_names": [p.name for p in inputs], "output_names": [p.name for p in outputs]}
    # Batch, height and width are dynamic: the contract names them.
    symbolic = {p.name: {i: d for i, d in enumerate(p.shape) if isinstance(d, str)}
                for p in inputs + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation chatter; parity is the real check
        if exporter == "torchscript":
            torch.onnx.export(
                wrapper, args, str(path), dynamo=False, opset_version=opset,
                dynamic_axes=symbolic, **names,
            )
        elif exporter == "dynamo":
            from torch.export import Dim

            side = contract.MIN_SIDE
            dims = {"batch": Dim("batch", min=1, max=64), "height": Dim("height", min=side),
                    "width": Dim("width", min=side)}
            shapes = {p.name: {i: dims[d] for i, d in axes.items()}
                      for p in inputs for axes in [symbolic[p.name]]}
            torch.onnx.export(
                wrapper, args, str(path), dynamo=True, opset_version=opset,
                dynamic_shapes=shapes, optimize=True, verbose=False, **names,
            )
        else:
            raise ExportError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")


def _attach_card(path: Path, card: ModelCard) -> None:
    import onnx

    proto = onnx.load(str(path), load_external_data=True)
    del proto.metadata_props[:]
    proto.metadata_props.add(key=CARD_KEY, value=card.to_json())
    proto.producer_name = "stylebox"
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))  # one self-contained file: tiny models, no external data
    os.replace(tmp, path)
    for leftover in path.parent.glob(path.name + ".data"):
        leftover.unlink()


def check_parity(
    wrapper: UInt8Generator, sess, n: int, sizes: list[tuple[int, int]], seed: int = 0
) -> list[ParityCase]:
    """The plain path: ORT session `sess` vs PyTorch at `sizes`, one pure style and a blend."""
    gen = torch.Generator().manual_seed(seed)
    # The reference is always the plain network (the fused instance norm of training), so a
    # graph with statistics is also checked to be the same model when use_stats = 0.
    plain = UInt8Generator(wrapper.generator).eval()
    stats = isinstance(wrapper, UInt8StatsGenerator)
    cases = []
    for h, w in sizes:
        image = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8, generator=gen)
        weights = _blend_weights(n, 2)  # row 0 one-hot, row 1 a blend of all styles
        with torch.no_grad():
            ref = plain(image, weights).numpy().astype(np.int16)
        feed = {contract.IMAGE: image.numpy(), contract.WEIGHTS: weights.numpy()}
        if stats:  # use_stats = 0: norm_stats (zeros here) must not matter
            feed |= {contract.STATS: np.zeros((2, wrapper.generator.stats_size()), np.float32),
                     contract.USE_STATS: np.zeros((2, 1), np.float32)}
        out = sess.run([contract.STYLIZED], feed)[0]
        if out.shape != ref.shape or out.dtype != np.uint8:
            raise ExportError(f"ONNX output {out.shape} {out.dtype} != PyTorch {ref.shape} uint8")
        diff = np.abs(out.astype(np.int16) - ref)
        cases.append(ParityCase(f"{h}x{w}", h, w, int(diff.max()), float((diff > 0).mean())))
    return cases


def check_stats_parity(
    wrapper: UInt8StatsGenerator, sess, n: int, size: tuple[int, int], seed: int = 1
) -> tuple[ParityCase, float]:
    """The tile path: ORT vs PyTorch with use_stats = 1 and statistics from another image.

    Row 0 takes the given statistics, row 1 (use = 0.5) a half blend. Also returns the worst
    relative error of computed_stats, the statistics a downscaled pass hands to the tiles.
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    weights = _blend_weights(n, 2)
    with torch.no_grad():
        other = torch.randint(0, 256, (2, h // 2 + 8, w // 2 + 8, 3), dtype=torch.uint8,
                              generator=gen)
        collect = NormStats()  # plain statistics of a smaller, different image
        wrapper.generator(to_float_chw(other), weights, collect)
        given = collect.packed()  # (2, S)
        use = torch.tensor([[1.0], [0.5]])
        image = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8, generator=gen)
        ref, ref_stats = wrapper(image, weights, given, use)
    feed = {contract.IMAGE: image.numpy(), contract.WEIGHTS: weights.numpy(),
            contract.STATS: given.numpy(), contract.USE_STATS: use.numpy()}
    out, stats = sess.run([contract.STYLIZED, contract.COMPUTED_STATS], feed)
    if out.shape != tuple(ref.shape) or stats.shape != tuple(ref_stats.shape):
        raise ExportError(f"ONNX outputs {out.shape}, {stats.shape} != PyTorch "
                          f"{tuple(ref.shape)}, {tuple(ref_stats.shape)}")
    diff = np.abs(out.astype(np.int16) - ref.numpy().astype(np.int16))
    case = ParityCase(f"{h}x{w}+stats", h, w, int(diff.max()), float((diff > 0).mean()))
    return case, stats_error(stats, ref_stats.numpy(), wrapper.generator.norm_channels())


def stats_error(got: np.ndarray, ref: np.ndarray, channels: list[int],
                eps: float = 1e-5) -> float:
    """The worst error of packed CIN statistics (B, S) as the normalisation feels it.

    A mean's error counts in units of its channel's standard deviation (it shifts
    (x - mean) / std by that much), a variance's error relative to the variance (+ the
    norm's eps). A plain |diff| / |ref| would flag a channel whose mean is ~0 next to
    channels in the tens, which float32 summation order alone does in trained models.
    """
    worst, off = 0.0, 0
    for c in channels:  # per CIN layer: c means, then c variances
        m, v = ref[:, off:off + c], ref[:, off + c:off + 2 * c]
        dm = np.abs(got[:, off:off + c] - m) / np.sqrt(v + eps)
        dv = np.abs(got[:, off + c:off + 2 * c] - v) / (v + eps)
        worst = max(worst, float(dm.max()), float(dv.max()))
        off += 2 * c
    return worst


def export_onnx(
    generator: Generator,
    card: ModelCard,
    path: str | Path,
    *,
    exporter: str = DEFAULT_EXPORTER,
    opset: int = DEFAULT_OPSET,
    export_size: int = 64,
    check_sizes: list[tuple[int, int]] | None = None,
    norm_stats: bool = True,
    sample_photo: str | Path | None = None,
    sample: dict | None = None,
    checkpoint: dict | None = None,
) -> ModelCard:
    """Export, attach the card, verify against PyTorch; returns the card as written.

    norm_stats=False writes the older graph without the statistics inputs and output.
    sample_photo: a photo to embed (small) for the service's style previews; or `sample`,
    an entry as `sample_entry` makes it (e.g. another model's, `sample_from`).
    checkpoint: the lineage record of the checkpoint it comes from (model/lineage.py `entry`),
    which style edits start from.
    """
    path = Path(path)
    if sample_photo is not None:
        sample = sample_entry(sample_photo)  # fail early
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = generator.float().eval().cpu()
    wrapper = (UInt8StatsGenerator if norm_stats else UInt8Generator)(generator).eval()
    n = card.n_styles
    if generator.cfg.n_styles != n:
        raise ExportError(f"generator has {generator.cfg.n_styles} styles, card lists {n}")
    _export_graph(wrapper, path, export_size, n, exporter, opset)
    # Two sizes other than the export size, one of them not divisible by 4.
    e = export_size
    sizes = check_sizes or [(e + 3, e * 2 - 6), (e * 2, e + 13)]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size = generator.stats_size() if norm_stats else 0
    try:  # the graph as written, checked by the code the service checks it with
        contract.check([contract.from_ort(a) for a in sess.get_inputs()],
                       [contract.from_ort(a) for a in sess.get_outputs()], n, size)
    except contract.ContractError as e:
        path.unlink(missing_ok=True)
        raise ExportError(f"the exported graph breaks the model contract: {e}") from None
    cases = check_parity(wrapper, sess, n, sizes)
    stats_rel = 0.0
    if norm_stats:
        stats_case, stats_rel = check_stats_parity(wrapper, sess, n, sizes[0])
        cases.append(stats_case)
    worst = max(c.max_abs for c in cases)
    frac = max(c.frac_differ for c in cases)
    card.export = {
        "exporter": exporter,
        "opset": opset,
        "torch": torch.__version__.split("+")[0],
        "export_size": export_size,
        **contract.describe(n, size),  # the ports, as model/contract.py defines them
        "min_side": generator.min_side(),
        # Present only when the graph takes and returns CIN statistics (service/tiling.py).
        **({"norm_stats": {
            "size": size,
            "layout": "per CIN layer in forward order: channel means, then channel variances",
            "channels": generator.norm_channels(),
            "receptive_radius": generator.receptive_radius(),
            "grid": generator.grid(),  # tile origins sit on this many px (service/tiling.py)
            "stats_max_rel": stats_rel,
        }} if norm_stats else {}),
        "parity": {"max_abs": worst, "frac_differ": frac, "sizes": [c.name for c in cases],
                   "tolerance": {"max_abs": PARITY_MAX_ABS, "max_fraction": PARITY_MAX_FRACTION}},
    }
    if worst > PARITY_MAX_ABS or frac > PARITY_MAX_FRACTION or stats_rel > STATS_MAX_REL:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX Runtime disagrees with PyTorch: max |diff| {worst} (allowed {PARITY_MAX_ABS}), "
            f"{frac:.2%} of values differ (allowed {PARITY_MAX_FRACTION:.0%}) at "
            + ", ".join(c.name for c in cases)
            + f"; computed_stats relative error {stats_rel:.2e} (allowed {STATS_MAX_REL:.0e})"
        )
    if sample is not None:
        card.export["sample"] = sample
    if checkpoint is not None:
        card.export[lineage.KEY] = checkpoint
    _attach_card(path, card)
    return card


def sample_entry(path: str | Path, size: int = SAMPLE_SIZE) -> dict:
    """A real photo for the page's style previews, small enough to ride in the card:
    centre-cropped to size x size, JPEG, base64 (~8 KB)."""
    import base64
    import io

    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.fit(ImageOps.exif_transpose(im).convert("RGB"), (size, size),
                          Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92)
    return {"file": Path(path).name, "size": size,
            "jpeg_base64": base64.b64encode(buf.getvalue()).decode("ascii")}


def sample_from(model: str | Path) -> dict:
    """The sample photo entry of an exported model's card, to carry it into a re-export
    (after add-style, remove-style or rename-style, which start the export facts afresh)."""
    from stylebox.model.card import CardError
    from stylebox.model.onnxfile import NotOnnxError, read_onnx

    if not Path(model).is_file():
        raise ExportError(f"--sample-from {model}: no such file")
    try:
        card = ModelCard.from_json(read_onnx(model).metadata[CARD_KEY])
    except (OSError, NotOnnxError, CardError, KeyError) as e:
        why = f"it has no {CARD_KEY} card" if isinstance(e, KeyError) else str(e)
        raise ExportError(f"--sample-from {model}: {why}") from None
    entry = card.export.get("sample")
    if not isinstance(entry, dict) or not entry.get("jpeg_base64"):
        raise ExportError(f"--sample-from {model}: its card carries no sample photo; give "
                          "--sample-photo PHOTO instead")
    return entry


def main(argv: list[str] | None = None) -> int:
    from stylebox.model.checkpoint import load_checkpoint

    p = argparse.ArgumentParser(prog="stylebox export", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a checkpoint written by `stylebox train`")
    p.add_argument("-o", "--out", required=True, help="the .onnx file to write")
    p.add_argument("--exporter", choices=EXPORTERS, default=DEFAULT_EXPORTER)
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--size", type=int, default=256, help="example input side used for tracing")
    p.add_argument("--version", help="override the card's version string")
    p.add_argument("--name", help="override the card's model name (name a variant after what "
                                  "it is, e.g. the file's stem)")
    p.add_argument("--no-norm-stats", action="store_true",
                   help="leave out the statistics inputs/output (no tiled inference)")
    sample = p.add_mutually_exclusive_group()
    sample.add_argument("--sample-photo", metavar="PHOTO",
                        help=f"embed this photo ({SAMPLE_SIZE} px) for the web page's style "
                             "previews (default: the service draws a synthetic scene)")
    sample.add_argument("--sample-from", metavar="MODEL.onnx",
                        help="embed the sample photo that this exported model carries (keeps "
                             "the page's previews when re-exporting after a style edit)")
    p.add_argument("--ship-dir", metavar="DIR",
                   help="the folder the model will be served from, when -o is written elsewhere "
                        "and moved there later (default: -o's folder); the card names the "
                        "checkpoint relative to it, so the checkpoint must lie inside it")
    args = p.parse_args(argv)
    carried = None
    if args.sample_from:
        try:
            carried = sample_from(args.sample_from)
        except ExportError as e:
            raise UserError(str(e)) from None  # a bad argument (exit 2), not a failed export
    generator, card, _ = load_checkpoint(args.checkpoint)  # CheckpointError: exit 2
    shipped_at = Path(args.ship_dir or Path(args.out).parent) / Path(args.out).name
    record = lineage.entry(args.checkpoint, shipped_at)
    if args.version:
        card.version = args.version
    if args.name:
        card.name = args.name
    try:
        card = export_onnx(generator, card, args.out, exporter=args.exporter, opset=args.opset,
                           export_size=args.size, norm_stats=not args.no_norm_stats,
                           sample_photo=args.sample_photo, sample=carried,
                           checkpoint=record)
    except (ExportError, OSError) as e:  # the stylebox entry point prints it on stderr
        raise ExportError(f"FAILED: {e}") from None
    if Path(record["file"]).is_absolute():
        # Adding or removing a style starts from the checkpoint the card names: an absolute
        # path only resolves on this machine, so the file would not survive being shipped.
        print(f"stylebox export: warning: the card names the checkpoint by its absolute path "
              f"({record['file']}), which only this machine has; for a model that can be "
              "copied or served elsewhere and still take style edits, keep the checkpoint "
              "inside the model's folder (or the folder --ship-dir names)", file=sys.stderr)
    par = card.export["parity"]
    size_mb = Path(args.out).stat().st_size / 1e6
    print(f"wrote {args.out} ({size_mb:.2f} MB, {len(card.styles)} styles, alpha={card.alpha}, "
          f"{args.exporter} opset {args.opset}); parity vs PyTorch at {', '.join(par['sizes'])}: "
          f"max |diff| {par['max_abs']}/255, {par['frac_differ']:.4%} of values differ")
    if "sample" in card.export:
        print(f"sample photo for the page's previews: {card.export['sample'].get('file', '?')}"
              + (f" (from {args.sample_from})" if args.sample_from else ""))
    else:
        print("no sample photo: the page's previews use a drawn scene (--sample-photo PHOTO, "
              "or --sample-from MODEL.onnx to keep another model's)")
    return 0
