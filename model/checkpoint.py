"""Checkpoints: generator weights + model card (+ optimizer and step when training).

The card's ``arch`` holds the GeneratorConfig, so a checkpoint rebuilds its own network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from stylebox.model.card import ModelCard
from stylebox.model.network import Generator, GeneratorConfig


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


def load_checkpoint(
    path: str | Path, map_location: str = "cpu"
) -> tuple[Generator, ModelCard, dict]:
    state = torch.load(path, map_location=map_location, weights_only=False)
    card = ModelCard.from_dict(state["card"])
    generator = build_generator(card)
    generator.load_state_dict(state["model"])
    return generator, card, state
