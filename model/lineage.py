"""Which checkpoint an exported model came from, and a model folder a worker may edit.

`stylebox export` records the checkpoint in the card (``export["checkpoint"]``: its path
relative to the model's folder and its sha256). A style edit (a new style from a painting,
a style removed) starts from that checkpoint, never from a guess: `checkpoint_of` finds it
and checks its bytes, and refuses a model without one in a sentence that says how to give
it one. Pure Python (no torch): the service reads it too.

A worker writes each edited model's checkpoint beside the others under a name that holds
its hash (`checkpoints/<stem>.<sha12>.pt`), and then replaces the model file in one rename:
whatever stops the worker, the model file and the checkpoint its card names always agree.
`seed_model` fills an empty model folder (a fresh volume) from a read-only copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from stylebox.errors import UserError
from stylebox.model.card import CARD_KEY, ModelCard
from stylebox.model.onnxfile import read_onnx

KEY = "checkpoint"  # card.export[KEY] = {"file": relative path, "sha256": hex}


class LineageError(UserError):
    """The model does not say which checkpoint it came from, or that file is not there."""


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def entry(checkpoint: str | Path, model: str | Path) -> dict[str, str]:
    """The card's record of `checkpoint` for a model written at `model`: the path relative to
    the model's folder where it lies inside it (so the folder can move), else absolute."""
    ckpt, folder = Path(checkpoint).resolve(), Path(model).resolve().parent
    rel = os.path.relpath(ckpt, folder) if ckpt.is_relative_to(folder) else str(ckpt)
    return {"file": Path(rel).as_posix(), "sha256": sha256_of(ckpt)}


def read_model_card(model: str | Path) -> ModelCard:
    onnx = read_onnx(model)
    if CARD_KEY not in onnx.metadata:
        raise LineageError(f"{model} has no model card")
    return ModelCard.from_json(onnx.metadata[CARD_KEY])


def checkpoint_of(model: str | Path, card: ModelCard | None = None) -> Path:
    """The checkpoint `model` was exported from, its bytes checked against the card."""
    card = card or read_model_card(model)
    record = card.export.get(KEY)
    how = (f"re-export it from its checkpoint (`stylebox export CHECKPOINT -o {model}`), "
           "which records it")
    if not isinstance(record, dict) or not record.get("file") or not record.get("sha256"):
        raise LineageError(f"{model} does not record the checkpoint it was exported from, so "
                           f"no style can be added to it or removed from it; {how}")
    path = Path(model).resolve().parent / record["file"]
    if not path.is_file():
        raise LineageError(f"{model} was exported from {record['file']}, which is not beside "
                           f"it ({path} is missing); put the checkpoint there or {how}")
    if sha256_of(path) != record["sha256"]:
        raise LineageError(f"{path} is not the checkpoint {model} was exported from (its "
                           f"sha256 differs from the card's); {how}")
    return path


def stored_name(model: str | Path, digest: str) -> Path:
    """Where a worker keeps the checkpoint of an edited model: content-addressed, beside the
    model, so writing it never replaces a file another model names."""
    model = Path(model)
    return model.parent / "checkpoints" / f"{model.stem}.{digest[:12]}.pt"


def replace_atomically(src: str | Path, dst: str | Path) -> None:
    """Move `src` onto `dst` in one rename (same folder: write `src` there), after syncing its
    bytes: a reader sees the old file or the new one, never part of one."""
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(src, dst)


def _copy_into(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would shut out a server run as another user
        replace_atomically(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def seed_model(model: str | Path, seed: str | Path) -> bool:
    """Copy `seed` (an exported model) and the checkpoint it names to `model`, unless `model`
    exists; True if it copied. The checkpoint goes first, so the model file, once there,
    always finds it. Safe to run from several processes at once (each copy is one rename)."""
    model, seed = Path(model), Path(seed)
    if model.exists():
        return False
    card = read_model_card(seed)
    record = card.export.get(KEY)
    if isinstance(record, dict) and not Path(record.get("file", "/")).is_absolute():
        _copy_into(checkpoint_of(seed, card), model.parent / record["file"])
    _copy_into(seed, model)
    return True
