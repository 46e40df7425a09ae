"""`stylebox precision`: how far a lower precision moves the pictures, against ONNX Runtime f32.

Runs every style on every photo through ONNX Runtime f32 and through the engine under test:
OpenVINO at a precision (`--engine openvino --precision bf16`, on a CPU that runs it), or
ONNX Runtime on a copy of the model whose convolutions round their inputs, weights and
outputs to bf16 (`--emulate bf16`: what AMX does, f32 accumulation; runs on any CPU;
`--scope all` rounds every other float tensor too, as a runtime keeping all activations in
bf16 would). Prints
mean, p99.9 and max absolute difference in grey levels per style, checks them against the
start-up bound (service/precision.py) and writes a crop side by side: f32 | test | |diff| x 8.

  stylebox precision --model models/stylebox-a0.25.onnx --photos ../shared/data/eval-photos \\
      --emulate bf16 --crop docs/precision-crop.png
  stylebox precision --model models/stylebox-a1.onnx --photos DIR --engine openvino \\
      --precision bf16
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from stylebox.service.precision import BOUND, differences, summarize
from stylebox.service.settings import RunPrecision, choices

EMULATED = {"bf16": 16, "f16": 10}  # the ONNX TensorProto data type each rounds through


def emulate(model: Path, out: Path, precision: str = "bf16", scope: str = "conv") -> Path:
    """A copy of `model` whose Conv/ConvTranspose inputs, weights and outputs are rounded to
    `precision` (Cast there and back), in every subgraph; with scope="all" also every other
    float tensor a main-graph node writes (norms, adds, upsampling: a runtime that keeps all
    activations in bf16). Needs onnx (the train extra)."""
    import onnx
    from onnx import TensorProto, helper, shape_inference

    low = {"bf16": TensorProto.BFLOAT16, "f16": TensorProto.FLOAT16}[precision]
    proto = onnx.load(str(model))
    count = [0]

    def round_trip(name: str) -> tuple[list, str]:
        count[0] += 1
        mid, back = f"{name}__{precision}{count[0]}", f"{name}__f32_{count[0]}"
        return [helper.make_node("Cast", [name], [mid], to=low),
                helper.make_node("Cast", [mid], [back], to=TensorProto.FLOAT)], back

    def walk(nodes) -> list:
        out_nodes = []
        for node in nodes:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:  # If/Loop bodies (the stats switch)
                    inner = walk(attr.g.node)
                    del attr.g.node[:]
                    attr.g.node.extend(inner)
            if node.op_type not in ("Conv", "ConvTranspose"):
                out_nodes.append(node)
                continue
            for i in range(2):  # activation and weight
                casts, node.input[i] = round_trip(node.input[i])
                out_nodes += casts
            result = node.output[0]
            node.output[0] = f"{result}__raw"
            out_nodes.append(node)
            casts, rounded = round_trip(node.output[0])
            casts[-1].output[0] = result  # the rounded value takes the original name
            out_nodes += casts
        return out_nodes

    nodes = walk(proto.graph.node)
    if scope == "all":
        typed = shape_inference.infer_shapes(proto).graph
        floats = {v.name for v in [*typed.value_info, *typed.output]
                  if v.type.tensor_type.elem_type == TensorProto.FLOAT}
        every = []
        for node in nodes:
            every.append(node)
            if node.op_type in ("Cast", "Shape", "Constant", "If", "Loop"):
                continue  # our own round trips, shape bookkeeping, the stats switch
            for i, name in enumerate(node.output):
                if name in floats:
                    node.output[i] = f"{name}__raw_all"
                    casts, _ = round_trip(node.output[i])
                    casts[-1].output[0] = name
                    every += casts
        nodes = every
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    onnx.save(proto, str(out))
    return out


def _photos(folder: str, size: int, limit: int) -> list[tuple[str, np.ndarray]]:
    from stylebox.training.data import (
        list_photos,  # eval's listing (needs the train extra, as eval)
    )

    out = []
    for f in list_photos(folder, limit):
        with Image.open(f) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            out.append((f.name, np.asarray(im)))
    return out


def crop_strip(ref: np.ndarray, test: np.ndarray, side: int = 160) -> Image.Image:
    """f32 | test | |diff| x 8 of the side x side crop where they differ most."""
    d = np.abs(ref.astype(np.int16) - test.astype(np.int16)).sum(-1)
    h, w = d.shape
    side = min(side, h, w)
    # The window with the largest total difference (a coarse search: steps of side / 4).
    step = max(1, side // 4)
    best = max((d[y:y + side, x:x + side].sum(), y, x) for y in range(0, h - side + 1, step)
                for x in range(0, w - side + 1, step))
    _, y, x = best
    a, b = ref[y:y + side, x:x + side], test[y:y + side, x:x + side]
    diff = np.clip(np.abs(a.astype(np.int16) - b) * 8, 0, 255).astype(np.uint8)
    strip = np.concatenate([a, np.full((side, 4, 3), 255, np.uint8), b,
                            np.full((side, 4, 3), 255, np.uint8), diff], axis=1)
    return Image.fromarray(strip).resize((strip.shape[1] * 2, side * 2), Image.NEAREST)


def main(argv: list[str] | None = None) -> int:
    from stylebox.errors import doc_parser, need_file
    from stylebox.service.backends.ort import OrtEngine
    from stylebox.service.engine import Engine

    p = doc_parser("stylebox precision", __doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--photos", required=True, help="folder of photos")
    p.add_argument("--size", type=int, default=512, help="long side the photos are fit into")
    p.add_argument("--max-photos", type=int, default=0)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--emulate", choices=sorted(EMULATED),
                       help="ONNX Runtime on a copy rounded to this precision")
    group.add_argument("--engine", choices=["openvino"], help="a real backend")
    p.add_argument("--precision", default="bf16", choices=choices(RunPrecision))
    p.add_argument("--scope", default="conv", choices=["conv", "all"],
                   help="--emulate: round convolutions only, or every float tensor")
    p.add_argument("--crop", help="write the side-by-side crop (PNG) here")
    args = p.parse_args(argv)
    photos = _photos(args.photos, args.size, args.max_photos)  # DataError: none there (exit 2)
    # A missing --model is a bad argument (exit 2); one that does not load, ModelLoadError (1).
    need_file(args.model, "model file")
    with tempfile.TemporaryDirectory() as tmp:
        reference = OrtEngine(args.model)
        test: Engine
        if args.emulate:
            test = OrtEngine(emulate(Path(args.model), Path(tmp) / "low.onnx", args.emulate,
                                     args.scope))
            what = "convolutions" if args.scope == "conv" else "every float tensor"
            label = f"ONNX Runtime, {what} rounded to {args.emulate}"
        else:
            from stylebox.service.backends.ov import OpenVinoEngine

            test = OpenVinoEngine(args.model, args.precision)
            label = f"OpenVINO, asked {args.precision}, runs {test.precision}"
    print(f"{Path(args.model).name}: {label} vs ONNX Runtime f32; {len(photos)} photos fit "
          f"into {args.size} px\n")
    print("| style | mean | p99.9 | max |\n|---|---:|---:|---:|")
    worst: tuple[float, np.ndarray, np.ndarray] | None = None
    all_d = []
    for i, name in enumerate(reference.style_names):
        w = reference.one_hot(i)
        ds = []
        for _, rgb in photos:
            a, b = reference.stylize(rgb, w), test.stylize(rgb, w)
            d = differences(a, b)
            ds.append(d)
            if worst is None or d.mean() > worst[0]:
                worst = (float(d.mean()), a, b)
        all_d.append(np.concatenate(ds))
        s = summarize(all_d[-1])
        print(f"| {name} | {s['mean']:.2f} | {s['p99_9']:.0f} | {s['max']:.0f} |")
    s = summarize(np.concatenate(all_d))
    print(f"| **all** | {s['mean']:.2f} | {s['p99_9']:.0f} | {s['max']:.0f} |\n\nstart-up "
          f"bound ({BOUND}): {'within' if s['ok'] else 'EXCEEDED'}")
    if args.crop and worst is not None:
        Path(args.crop).parent.mkdir(parents=True, exist_ok=True)
        crop_strip(worst[1], worst[2]).save(args.crop)
        print(f"wrote {args.crop} (the photo and style that moved most: f32 | test | diff x 8)")
    return 0
