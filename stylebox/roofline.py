"""The floor under the benchmark: work per image, and what this machine can do per second.

`graph_cost` counts FLOPs and bytes for one image from the ONNX graph itself (any model
file, not only ours): ONNX Runtime's symbolic shape inference gives every tensor's shape at
the image size, then each node is costed. Conv: 2 x MACs (+ bias); the other nodes: their
output elements (times a small factor for norms), which is noise next to the convs.
Bytes assume no fusion: every node reads its inputs and writes its output once, so they are
an upper bound on memory traffic; `min_bytes` (weights + input + output) is the lower bound.

`machine_peaks` measures a float32 GEMM rate (numpy/BLAS on all cores) and a memory copy
rate in the calling process, so the roofline belongs to the same run as the timings.
`openvino_gemm_gflops` measures a bf16 (or f16) GEMM the way the engine runs one: a MatMul
compiled by OpenVINO's CPU plugin at that precision (AMX tiles where the CPU has them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_ELEM_BYTES = {1: 4, 2: 1, 3: 1, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}  # ONNX dtype -> bytes
_FLOPS_PER_ELEM = {"InstanceNormalization": 5, "Sigmoid": 4, "Softmax": 5}


@dataclass
class Cost:
    flops: float  # per image
    bytes: float  # per image, unfused traffic (upper bound)
    min_bytes: float  # weights + input + output (lower bound)
    conv_share: float  # fraction of FLOPs in Conv nodes

    @property
    def intensity(self) -> float:
        """FLOPs per byte of (unfused) traffic."""
        return self.flops / self.bytes


@dataclass
class Peaks:
    gemm_gflops: float  # float32
    copy_gbs: float  # bytes read + written per second, / 1e9
    # Lower-precision GEMM rates (OpenVINO on AMX / AVX512_BF16), by precision name.
    low: dict[str, float] = field(default_factory=dict)

    def attainable_gflops(self, intensity: float, precision: str = "f32") -> float | None:
        """The roofline at `intensity`; None for a precision whose peak was not measured."""
        peak = self.gemm_gflops if precision == "f32" else self.low.get(precision)
        return None if peak is None else min(peak, intensity * self.copy_gbs)


def _fixed_shape_model(path: Path, height: int, width: int):
    import onnx

    model = onnx.load(str(path))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name == "image":
            values = [1, height, width, 3]
        else:  # style weights (1, N): N is fixed by the file already
            values = [1] + [d.dim_value for d in dims[1:]]
        for d, v in zip(dims, values, strict=True):
            d.ClearField("dim_param")
            d.dim_value = v
    return model


def graph_cost(path: str | Path, height: int, width: int) -> Cost:
    """FLOPs and bytes for one (height, width) image through the model at `path`."""
    from onnx import numpy_helper
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = SymbolicShapeInference.infer_shapes(
        _fixed_shape_model(Path(path), height, width), auto_merge=True)
    g = model.graph
    shapes: dict[str, tuple[tuple[int, ...], int]] = {}
    for v in [*g.input, *g.value_info, *g.output]:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim)
        shapes[v.name] = (dims, _ELEM_BYTES.get(t.elem_type, 4))
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for name, arr in inits.items():
        shapes[name] = (arr.shape, arr.itemsize)

    def nbytes(name: str) -> int:
        dims, size = shapes.get(name, ((), 0))
        return int(np.prod(dims, dtype=np.int64)) * size if dims else size

    def numel(name: str) -> int:
        dims, _ = shapes.get(name, ((), 0))
        return int(np.prod(dims, dtype=np.int64)) if dims else 1

    flops = conv = 0.0
    traffic = 0.0
    for node in g.node:
        out = node.output[0]
        if node.op_type == "Conv":
            w_dims = shapes[node.input[1]][0]  # (Cout, Cin/groups, kh, kw)
            macs = numel(out) * int(np.prod(w_dims[1:], dtype=np.int64))
            f = 2.0 * macs + (numel(out) if len(node.input) > 2 else 0)
            conv += f
        elif node.op_type in ("Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Slice",
                              "Reshape", "Squeeze", "ConstantOfShape", "Transpose", "Cast"):
            f = 0.0  # shape bookkeeping and layout moves: bytes, no arithmetic
        else:
            f = float(numel(out) * _FLOPS_PER_ELEM.get(node.op_type, 1))
        flops += f
        traffic += sum(nbytes(i) for i in node.input if i) + sum(nbytes(o) for o in node.output)
    weights = sum(a.nbytes for a in inits.values())
    io = sum(nbytes(i.name) for i in g.input) + sum(nbytes(o.name) for o in g.output)
    return Cost(flops, traffic, float(weights + io), conv / flops if flops else 0.0)


def _best_rate(fn, work: float, budget_s: float) -> float:
    """Best (work / s) over repeated calls of fn() within about budget_s seconds."""
    fn()  # warm caches, BLAS threads, page faults
    best, end = 0.0, time.perf_counter() + budget_s
    while True:
        t = time.perf_counter()
        fn()
        best = max(best, work / (time.perf_counter() - t))
        if time.perf_counter() > end:
            return best


def machine_peaks(budget_s: float = 1.0, gemm_n: int = 1024, copy_mb: int = 128) -> Peaks:
    """float32 GEMM GFLOP/s (numpy's BLAS, all its threads) and memcpy GB/s (read + write)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((gemm_n, gemm_n), dtype=np.float32)
    b = rng.standard_normal((gemm_n, gemm_n), dtype=np.float32)
    gemm = _best_rate(lambda: a @ b, 2.0 * gemm_n**3 / 1e9, budget_s / 2)
    src = np.ones(copy_mb * 2**20, np.uint8)
    dst = np.empty_like(src)
    copy = _best_rate(lambda: np.copyto(dst, src), 2.0 * src.nbytes / 1e9, budget_s / 2)
    return Peaks(gemm, copy)


def openvino_gemm_gflops(precision: str, n: int = 2048, budget_s: float = 1.0) -> float:
    """GFLOP/s of an n x n x n MatMul compiled by OpenVINO at `precision` (all cores)."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([n, n], np.float32, name="a")
    b = ops.constant(rng.standard_normal((n, n), dtype=np.float32))
    model = ov.Model([ops.matmul(a, b, False, False)], [a], "gemm")
    from stylebox.service.backends.ov import core

    compiled = core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                   "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    x = rng.standard_normal((n, n), dtype=np.float32)
    return _best_rate(lambda: request.infer([x]), 2.0 * n**3 / 1e9, budget_s)
