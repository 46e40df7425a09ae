"""The ONNX file's contract: the graph's inputs and outputs, written by export, checked by serving.

model/export.py names the graph's ports from here and checks the file it wrote against
`check`; the service's engine (service/engine.py) runs the same `check` on whatever a runtime
reports before it serves a file. Pure Python, like model/card.py: the service reads it
without torch.

    image          uint8   (B, H, W, 3)  RGB
    style_weights  float32 (B, N)        rows sum to 1; N = the card's styles
    stylized       uint8   (B, H, W, 3)  RGB, same H and W

A graph exported with instance-norm statistics (the default; tiled inference, see
service/tiling.py) also has

    norm_stats      float32 (B, S)  per CIN layer: channel means, then channel variances
    use_stats       float32 (B, 1)  0 = the image's own statistics, 1 = norm_stats
    computed_stats  float32 (B, S)  the statistics this pass computed

with S the card's `export.norm_stats.size`. Batch, height and width are symbolic.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE, WEIGHTS, STYLIZED = "image", "style_weights", "stylized"
STATS, USE_STATS, COMPUTED_STATS = "norm_stats", "use_stats", "computed_stats"
# The smallest side the network takes: its reflection padding at 1/4 resolution needs two
# pixels per side. The engine edge-pads smaller images up to it and crops back.
MIN_SIDE = 8
# Tile origins sit on this many pixels (two stride-2 convs) unless the card's norm_stats
# says otherwise ("grid": 8 for networks that run wholly at half resolution, resize = "all").
DEFAULT_GRID = 4
Dim = int | str | None  # a size, a symbolic name ("batch"), or None (symbolic, unnamed)


class ContractError(ValueError):
    """A graph whose ports differ from the contract; str() is one line naming the first."""


@dataclass(frozen=True)
class Port:
    """One graph input or output: its name, numpy dtype name and shape."""

    name: str
    dtype: str  # numpy spelling: "uint8", "float32", ...
    shape: tuple[Dim, ...]

    def describe(self) -> str:
        return f"{self.dtype} [{', '.join(str(d) for d in self.shape)}]"


def ports(n_styles: int, stats_size: int = 0) -> tuple[list[Port], list[Port]]:
    """(inputs, outputs) of a graph for `n_styles` styles; stats_size > 0 adds the statistics."""
    image = ("batch", "height", "width", 3)
    inputs = [Port(IMAGE, "uint8", image), Port(WEIGHTS, "float32", ("batch", n_styles))]
    outputs = [Port(STYLIZED, "uint8", image)]
    if stats_size:
        inputs += [Port(STATS, "float32", ("batch", stats_size)),
                   Port(USE_STATS, "float32", ("batch", 1))]
        outputs.append(Port(COMPUTED_STATS, "float32", ("batch", stats_size)))
    return inputs, outputs


def from_ort(arg) -> Port:
    """A port as ONNX Runtime's NodeArg reports it: type "tensor(float)", dims int, str or None."""
    elem = arg.type.removeprefix("tensor(").removesuffix(")")
    dtype = {"float": "float32", "double": "float64", "float16": "float16"}.get(elem, elem)
    return Port(arg.name, dtype, tuple(d if isinstance(d, int) else None for d in arg.shape))


def describe(n_styles: int, stats_size: int = 0) -> dict[str, dict[str, str]]:
    """The contract as the model card's `export` section records it."""
    inputs, outputs = ports(n_styles, stats_size)
    return {"inputs": {p.name: p.describe() for p in inputs},
            "outputs": {p.name: p.describe() for p in outputs}}


def check(inputs: list[Port], outputs: list[Port], n_styles: int, stats_size: int = 0) -> None:
    """Raise ContractError unless the ports a runtime reports match the contract.

    A symbolic dimension (None or a name) in the reported ports matches anything; a concrete
    one must equal the contract's where the contract has a size.
    """
    want_in, want_out = ports(n_styles, stats_size)
    for kind, got, want in (("inputs", inputs, want_in), ("outputs", outputs, want_out)):
        have = {p.name: p for p in got}
        names = sorted(p.name for p in want)
        # Extra outputs are harmless (the runtime only fetches what it asks for); inputs
        # must be exactly these, since every input needs a value at run time.
        if (set(have) != set(names)) if kind == "inputs" else not set(names) <= set(have):
            raise ContractError(f"{kind} are {sorted(have)}, expected {names}")
        for spec in want:
            _check_port(have[spec.name], spec, n_styles)


def _check_port(port: Port, spec: Port, n_styles: int) -> None:
    if port.dtype != spec.dtype:
        raise ContractError(f"{port.name!r} is {port.dtype}, expected {spec.dtype}")
    sized = len(port.shape) == len(spec.shape) and all(
        not isinstance(d, int) or not isinstance(s, int) or d == s
        for d, s in zip(port.shape, spec.shape, strict=True))
    if sized:
        return
    shown = [d if isinstance(d, int) else "?" for d in port.shape]
    if spec.name == WEIGHTS:
        raise ContractError(f"{WEIGHTS!r} has shape {shown}, but the card lists {n_styles} "
                            "styles")
    raise ContractError(f"{port.name!r} is {port.dtype} {shown}, expected {spec.describe()}")
