"""Checkpoints: generator weights + model card (+ optimizer and step when training).

The card's ``arch`` holds the GeneratorConfig, so a checkpoint rebuilds its own network.
A file that is missing, is not a checkpoint or does not fit its card is a CheckpointError
(one line), whichever command reads it. Every checkpoint is read with torch's weights-only
unpickler: tensors, numbers, strings and the containers that hold them, which is all
stylebox writes. A file whose pickle asks for anything else (a downloaded file that would
run code) is refused before any of it runs.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from stylebox.errors import UserError
from stylebox.model.card import CardError, ModelCard
from stylebox.model.network import Generator, GeneratorConfig


class CheckpointError(UserError):
    """A checkpoint file that is missing, is not a stylebox checkpoint, or is malformed."""


def generator_config(card: ModelCard) -> GeneratorConfig:
    return GeneratorConfig.from_dict({**card.arch, "alpha": card.alpha, "n_styles": card.n_styles})


def build_generator(card: ModelCard) -> Generator:
    return Generator(generator_config(card))


def save_checkpoint(path: str | Path, generator: Generator, card: ModelCard, **extra: Any) -> None:
    """Write atomically (tmp + rename) so an interrupted run never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": generator.state_dict(), "card": card.to_dict(), **extra}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str | Path, map_location: str = "cpu") -> Any:
    """torch.load with the weights-only unpickler; CheckpointError (one line) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    except pickle.UnpicklingError as e:
        if "unsupported global" not in str(e).lower():
            return None  # not a pickle at all (an .onnx, junk): the caller says what it wanted
        # The pickle names a global outside the allow-list: whatever it is, it is not
        # something stylebox wrote, and unpickling it could run code.
        raise CheckpointError(
            f"{path} is refused: its pickle asks for Python objects other than tensors, "
            "numbers and strings (stylebox never writes those; loading it could run code)"
        ) from None
    except Exception:  # torch.load fails in many ways (zip, EOF, ...) on other files
        return None


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """The checkpoint's dict (weights, card, and what training added), unchecked beyond
    having weights and a card."""
    state = load_state(path, map_location)
    if not isinstance(state, dict) or not {"model", "card"} <= state.keys():
        raise CheckpointError(f"{path} is not a stylebox checkpoint (an .onnx file? give the "
                              "checkpoint that `stylebox train` or `add-style` wrote)")
    return state


def load_checkpoint(
    path: str | Path, map_location: str = "cpu"
) -> tuple[Generator, ModelCard, dict]:
    state = read_checkpoint(path, map_location)
    try:
        card = ModelCard.from_dict(state["card"])
        generator = build_generator(card)  # ValueError, TypeError: a card arch it cannot build
    except (CardError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid model card: {e}") from None
    try:
        generator.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        # torch lists every missing or mismatched key over many lines: one line, the start.
        why = " ".join(str(e).split())
        why = why if len(why) <= 200 else why[:200] + " ..."
        raise CheckpointError(f"{path}: its weights do not fit its card ({why})") from None
    return generator, card, state


def load_generator(path: str | Path) -> tuple[Generator, ModelCard]:
    """A generator and its card from a checkpoint or from an exported ``.onnx`` file (whose
    initialisers keep the generator's parameter names and whose card rebuilds the network):
    a served model can teach (distillation) or be pruned without its training checkpoint."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        generator, card, _ = load_checkpoint(path)
        return generator, card
    import onnx
    from onnx import numpy_helper

    from stylebox.model.card import CARD_KEY
    from stylebox.model.onnxfile import read_onnx

    if not path.is_file():
        raise CheckpointError(f"model {path} not found")
    try:
        card = ModelCard.from_json(read_onnx(path).metadata[CARD_KEY])
        graph = onnx.load(str(path)).graph
        generator = build_generator(card)
    except Exception as e:  # not ONNX, no card, a card it cannot build, a truncated graph
        raise CheckpointError(f"{path}: not a stylebox ONNX model ({e})") from None
    names = set(generator.state_dict())
    state = {}
    for init in graph.initializer:
        name = init.name.removeprefix("generator.")
        if name in names:
            state[name] = torch.from_numpy(numpy_helper.to_array(init).copy())
    missing = sorted(names - set(state))
    if missing:
        raise CheckpointError(f"{path}: the graph lacks the weights {missing[:3]} (exported by "
                              "another exporter that renamed them?); use its checkpoint")
    generator.load_state_dict(state)
    return generator, card
