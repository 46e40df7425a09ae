"""Shared fixtures: a tiny model the tests build themselves (no downloads, no shared data).

Its γ/β tables are randomised so that every style really looks different; the weights are
otherwise untrained, which is all the service and export tests need.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_STYLES = [
    {"name": "candy", "title": "Candy", "source": "test style A"},
    {"name": "mosaic", "title": "Mosaic", "source": "test style B"},
    {"name": "udnie", "title": "Udnie", "source": "test style C"},
]


def make_tiny_generator(n_styles: int = 3, alpha: float = 0.25, seed: int = 0):
    import torch

    from model.network import Generator, GeneratorConfig

    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(n_styles=n_styles, alpha=alpha, n_residual=2)).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("gamma"):
                p.normal_(1.0, 0.5)
            elif name.endswith("beta"):
                p.normal_(0.0, 0.5)
    return g


def make_tiny_card(styles=TINY_STYLES, alpha: float = 0.25):
    from model.card import ModelCard

    return ModelCard(name="stylebox-tiny", version="test", alpha=alpha, styles=list(styles),
                     arch={"n_residual": 2, "base_channels": [32, 64, 128]})


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A 3-style α=0.25 ONNX model with its card, exported (and parity-checked) once."""
    from model.export import export_onnx

    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_onnx(make_tiny_generator(), make_tiny_card(), path, export_size=32)
    return path
