"""What stylebox reads from an .onnx file without any runtime: its metadata (the model card
rides there) and where its external data would be read from.

The top-level protobuf fields are walked by hand (the graph's big fields are skipped, not
parsed), so this is cheap and needs neither onnx nor a runtime. The service runs it before a
runtime sees a file: a file that is no ONNX model at all (a checkpoint, an image, a
truncated download) is refused in one line, instead of whatever a runtime's parser prints,
and so is a model whose external data points outside its own folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stylebox.errors import UserError


class NotOnnxError(UserError):
    """The file is not an ONNX model at all (a checkpoint, an image, a truncated file)."""


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(buf) or shift > 63:
            raise NotOnnxError("truncated: it ends inside a field")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return value, i


def _fields(buf: memoryview) -> list[tuple[int, int, memoryview | int]]:
    """(field number, wire type, bytes or int) of one protobuf message, without descending."""
    out, i = [], 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire in (1, 5):  # fixed 64 / 32 bits
            value, i = buf[i:i + (8 if wire == 1 else 4)], i + (8 if wire == 1 else 4)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise NotOnnxError(f"not protobuf: wire type {wire} at byte {i}")
        if number == 0 or i > len(buf):
            raise NotOnnxError("truncated, or not protobuf")
        out.append((number, wire, value))
    return out


@dataclass(frozen=True)
class OnnxFile:
    metadata: dict[str, str]  # metadata_props
    external: list[str]  # the `location` of every initializer stored outside the file


def _strings(entries: list[memoryview]) -> dict[str, str]:
    """StringStringEntryProto messages (key = 1, value = 2) as a dict."""
    out = {}
    for raw in entries:
        entry = {n: v for n, w, v in _fields(raw) if w == 2}
        try:
            out[bytes(entry.get(1, b"")).decode()] = bytes(entry.get(2, b"")).decode()
        except UnicodeDecodeError:
            raise NotOnnxError("text that is not UTF-8") from None
    return out


def read_onnx(path: str | Path) -> OnnxFile:
    """The metadata and external-data locations of an ONNX file; NotOnnxError if it is none."""
    data = memoryview(Path(path).read_bytes())  # slices below are views, not copies
    if data[:4] == b"PK\x03\x04":  # torch.save's zip format
        raise NotOnnxError("this is a zip file (a PyTorch checkpoint?), not an ONNX model; "
                           "make one with `stylebox export CHECKPOINT -o MODEL.onnx`")
    fields = _fields(data)
    # ModelProto: 1 = ir_version (varint), 7 = graph, 14 = metadata_props.
    graphs = [v for n, w, v in fields if n == 7 and w == 2]
    if not any(n == 1 and w == 0 for n, w, _ in fields) or len(graphs) != 1:
        raise NotOnnxError("no ONNX graph in it")
    meta = _strings([v for n, w, v in fields if n == 14 and w == 2])
    external = []
    # GraphProto: 5 = initializer (TensorProto: 13 = external_data, 14 = data_location).
    for n, w, tensor in _fields(graphs[0]):
        if n == 5 and w == 2:
            tf = _fields(tensor)
            if any(k == 14 and v == 1 for k, _, v in tf):  # EXTERNAL
                where = _strings([v for k, t, v in tf if k == 13 and t == 2])
                external.append(where.get("location", ""))
    return OnnxFile(meta, external)


def check_external(path: str | Path, onnx: OnnxFile) -> None:
    """NotOnnxError unless every external-data file lies inside the model's own folder."""
    folder = Path(path).resolve().parent
    for location in onnx.external:
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise NotOnnxError(f"its weights would be read from {location!r}, outside the "
                               "model's folder; refusing it")
