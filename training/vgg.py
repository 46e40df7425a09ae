"""VGG-19 feature extractor for the perceptual loss.

Weights come from a local file (a state dict of `torchvision.models.vgg19().features[:k]`,
any float dtype, e.g. `../shared/data/vgg/vgg19_features_to_relu5_1_fp16.pth`) or, with
internet, from torchvision's own ImageNet weights (`"torchvision"`). The network is cut after
the deepest layer the loss uses, frozen, and takes RGB in [0, 1] (it normalises itself).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stylebox.errors import UserError
from stylebox.training.config import VGG_LAYERS

# torchvision vgg19().features: conv/relu pairs with max-pools after each block.
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class VGGError(UserError):
    """A VGG weights file that is missing or does not reach the loss's layers."""


def vgg19_features(n_modules: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in _CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    return nn.Sequential(*layers[:n_modules])


class VGGFeatures(nn.Module):
    """(B, 3, H, W) in [0, 1] -> {layer name: (B, C, h, w)} for the requested layers."""

    def __init__(self, layers: list[str], features: nn.Sequential):
        super().__init__()
        self.layers = {VGG_LAYERS[n]: n for n in layers}
        self.features = features
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, upto: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Features of every configured layer, or (``upto``) only of those, stopping after
        the deepest of them: the content reference needs relu2_2, not a pass to relu5_1."""
        want = self.layers if upto is None else {VGG_LAYERS[n]: n for n in upto}
        last = max(want)
        x = (x - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in want:
                out[want[i]] = x
            if i == last:
                break
        return out


def load_vgg(source: str | Path, layers: list[str]) -> VGGFeatures:
    """`source`: a state-dict file path, or "torchvision" (downloads, needs internet)."""
    depth = max(VGG_LAYERS[n] for n in layers) + 1  # modules up to the deepest ReLU
    features = vgg19_features(depth)
    if str(source) == "torchvision":
        from torchvision.models import VGG19_Weights, vgg19

        full = vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features
        features.load_state_dict(full[:depth].state_dict())
        return VGGFeatures(layers, features)
    path = Path(source)
    if not path.is_file():
        raise VGGError(f"VGG weights file {path} not found (pass --vgg-weights FILE, or "
                       "'torchvision' to download torchvision's weights)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle, zip, EOF, weights_only refusals: not a plain state dict
        state = None
    if not isinstance(state, dict):
        raise VGGError(f"{path} is not a VGG state dict (torchvision vgg19().features keys)")
    want = features.state_dict().keys()
    missing = [k for k in want if k not in state]
    if missing:
        raise VGGError(f"{path} lacks {', '.join(missing[:4])}...: it does not reach layer "
                       f"{max(layers, key=VGG_LAYERS.get)} of vgg19().features")
    features.load_state_dict({k: state[k].float() for k in want})
    return VGGFeatures(layers, features)

