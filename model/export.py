"""ONNX export that checks itself.

The exported graph takes ``image`` uint8 (B, H, W, 3) and ``style_weights`` float32 (B, N)
and returns ``stylized`` uint8 (B, H, W, 3); batch, height and width are dynamic, so one
file serves every size and every blend. The model card rides along in ``metadata_props``.

After writing, the file is run in ONNX Runtime against PyTorch at two sizes other than
the export size (one not divisible by 4) and for a blend; the export fails if any output
value differs by more than ``PARITY_MAX_ABS`` grey levels or more than
``PARITY_MAX_FRACTION`` of values differ at all (float rounding flips a few .5 cases).
"""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.card import CARD_KEY, ModelCard
from model.network import Generator, UInt8Generator

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_EXPORTER = "torchscript"  # fast, clean symbolic shapes, present in torch 2.4 .. 2.14
DEFAULT_OPSET = 17
PARITY_MAX_ABS = 2  # grey levels out of 255
PARITY_MAX_FRACTION = 0.01
INPUT_NAMES = ("image", "style_weights")
OUTPUT_NAME = "stylized"


class ExportError(RuntimeError):
    pass


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
    image = torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8)
    weights = _blend_weights(n, 1)
    names = {"input_names": list(INPUT_NAMES), "output_names": [OUTPUT_NAME]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation chatter; parity is the real check
        if exporter == "torchscript":
            axes = {0: "batch", 1: "height", 2: "width"}
            torch.onnx.export(
                wrapper, (image, weights), str(path), dynamo=False, opset_version=opset,
                dynamic_axes={"image": axes, "style_weights": {0: "batch"}, OUTPUT_NAME: axes},
                **names,
            )
        elif exporter == "dynamo":
            from torch.export import Dim

            b, h, w = Dim("batch", min=1, max=64), Dim("height", min=8), Dim("width", min=8)
            torch.onnx.export(
                wrapper, (image, weights), str(path), dynamo=True, opset_version=opset,
                dynamic_shapes={"image": {0: b, 1: h, 2: w}, "style_weights": {0: b}},
                optimize=True, verbose=False, **names,
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
    wrapper: UInt8Generator, path: Path, n: int, sizes: list[tuple[int, int]], seed: int = 0
) -> list[ParityCase]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for h, w in sizes:
        image = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8, generator=gen)
        weights = _blend_weights(n, 2)  # row 0 one-hot, row 1 a blend of all styles
        with torch.no_grad():
            ref = wrapper(image, weights).numpy().astype(np.int16)
        out = sess.run([OUTPUT_NAME], {"image": image.numpy(), "style_weights": weights.numpy()})[0]
        if out.shape != ref.shape or out.dtype != np.uint8:
            raise ExportError(f"ONNX output {out.shape} {out.dtype} != PyTorch {ref.shape} uint8")
        diff = np.abs(out.astype(np.int16) - ref)
        cases.append(ParityCase(f"{h}x{w}", h, w, int(diff.max()), float((diff > 0).mean())))
    return cases


def export_onnx(
    generator: Generator,
    card: ModelCard,
    path: str | Path,
    *,
    exporter: str = DEFAULT_EXPORTER,
    opset: int = DEFAULT_OPSET,
    export_size: int = 64,
    check_sizes: list[tuple[int, int]] | None = None,
) -> ModelCard:
    """Export, attach the card, verify against PyTorch; returns the card as written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = generator.float().eval().cpu()
    wrapper = UInt8Generator(generator).eval()
    n = card.n_styles
    if generator.cfg.n_styles != n:
        raise ExportError(f"generator has {generator.cfg.n_styles} styles, card lists {n}")
    _export_graph(wrapper, path, export_size, n, exporter, opset)
    # Two sizes other than the export size, one of them not divisible by 4.
    e = export_size
    sizes = check_sizes or [(e + 3, e * 2 - 6), (e * 2, e + 13)]
    cases = check_parity(wrapper, path, n, sizes)
    worst = max(c.max_abs for c in cases)
    frac = max(c.frac_differ for c in cases)
    card.export = {
        "exporter": exporter,
        "opset": opset,
        "torch": torch.__version__.split("+")[0],
        "export_size": export_size,
        "inputs": {"image": "uint8 [batch, height, width, 3] RGB",
                   "style_weights": f"float32 [batch, {n}] (rows sum to 1)"},
        "outputs": {OUTPUT_NAME: "uint8 [batch, height, width, 3] RGB"},
        "min_side": Generator.MIN_SIDE,
        "parity": {"max_abs": worst, "frac_differ": frac, "sizes": [c.name for c in cases],
                   "tolerance": {"max_abs": PARITY_MAX_ABS, "max_fraction": PARITY_MAX_FRACTION}},
    }
    if worst > PARITY_MAX_ABS or frac > PARITY_MAX_FRACTION:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX Runtime disagrees with PyTorch: max |diff| {worst} (allowed {PARITY_MAX_ABS}), "
            f"{frac:.2%} of values differ (allowed {PARITY_MAX_FRACTION:.0%}) at "
            + ", ".join(c.name for c in cases)
        )
    _attach_card(path, card)
    return card


def main(argv: list[str] | None = None) -> int:
    from model.checkpoint import load_checkpoint

    p = argparse.ArgumentParser(prog="stylebox export", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a checkpoint written by `stylebox train`")
    p.add_argument("-o", "--out", required=True, help="the .onnx file to write")
    p.add_argument("--exporter", choices=EXPORTERS, default=DEFAULT_EXPORTER)
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--size", type=int, default=256, help="example input side used for tracing")
    p.add_argument("--version", help="override the card's version string")
    args = p.parse_args(argv)
    generator, card, _ = load_checkpoint(args.checkpoint)
    if args.version:
        card.version = args.version
    try:
        card = export_onnx(generator, card, args.out, exporter=args.exporter, opset=args.opset,
                           export_size=args.size)
    except ExportError as e:
        print(f"stylebox export: FAILED: {e}")
        return 1
    par = card.export["parity"]
    size_mb = Path(args.out).stat().st_size / 1e6
    print(f"wrote {args.out} ({size_mb:.2f} MB, {len(card.styles)} styles, alpha={card.alpha}, "
          f"{args.exporter} opset {args.opset}); parity vs PyTorch at {', '.join(par['sizes'])}: "
          f"max |diff| {par['max_abs']}/255, {par['frac_differ']:.4%} of values differ")
    return 0
