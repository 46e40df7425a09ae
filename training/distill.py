"""Distillation: a cheaper student learns what trained generators (teachers) paint.

A feed-forward generator trained from the perceptual loss alone has to discover each style
from Gram statistics, which takes thousands of steps. A trained teacher's output is a
per-pixel answer for every style, a denser signal for a student of another shape (pixels
and VGG features). The usual perceptual loss stays on, so the student is still judged by the
style images and can match the styles better than a small teacher does. docs/frontier.md
records what the variants reached with it on a short CPU budget.

Teachers are any trained generators (a checkpoint or an exported ``.onnx``), frozen; each
style of the student learns from the first teacher that has a style of that name (a 10-style
student can learn 8 styles from the α = 1 model and the other 2 from the default). Styles no
teacher has get the perceptual loss only.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from stylebox.model.checkpoint import load_generator
from stylebox.model.network import Generator


class Teachers:
    def __init__(self, paths: list[str], style_names: list[str], device: torch.device,
                 nhwc: bool = False):
        self.models: list[Generator] = []
        # per student style: (teacher number or -1, that teacher's row for it)
        which, row = [-1] * len(style_names), [0] * len(style_names)
        for t, path in enumerate(paths):
            gen, card = load_generator(path)
            gen = gen.eval().requires_grad_(False).to(device)
            if nhwc:
                gen = gen.to(memory_format=torch.channels_last)
            names = card.style_names
            for i, name in enumerate(style_names):
                if which[i] < 0 and name in names:
                    which[i], row[i] = t, names.index(name)
            self.models.append(gen)
        self.which = torch.tensor(which, device=device)  # (N,)
        self.row = torch.tensor(row, device=device)  # (N,)
        untaught = [n for n, w in zip(style_names, which, strict=True) if w < 0]
        if untaught:
            print(f"stylebox train: no teacher has {', '.join(untaught)}: the perceptual loss "
                  "alone trains them", file=sys.stderr)

    @torch.no_grad()
    def __call__(self, photo: torch.Tensor, style_idx: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The teachers' outputs (B, 3, H, W) for photo (B, 3, H, W) in each sample's style,
        and which samples have one (B,) bool."""
        out = torch.zeros_like(photo)
        who = self.which[style_idx]  # (B,)
        for t, gen in enumerate(self.models):
            sel = (who == t).nonzero().flatten()
            if len(sel):
                w = F.one_hot(self.row[style_idx[sel]], gen.cfg.n_styles).to(photo.dtype)
                out[sel] = gen(photo[sel], w).to(out.dtype)
        return out, who >= 0


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, taught: torch.Tensor,
                 feats: dict[str, torch.Tensor], teacher_feats: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel term, feature term) over the taught samples: mean |student - teacher| in [0, 1]
    units, and per VGG layer the squared feature error relative to the teacher's mean squared
    feature (so every layer counts alike, as in training/losses.py)."""
    if not bool(taught.any()):
        zero = student.new_zeros(()).float()
        return zero, zero
    m = taught.float()[:, None, None, None]  # (B, 1, 1, 1)
    n = m.sum()
    pixel = ((student.float() - teacher.float()).abs() * m).mean(dim=(1, 2, 3)).sum() / n
    feature = student.new_zeros(()).float()
    for name, t in teacher_feats.items():
        t = t.float()
        err = ((feats[name].float() - t).pow(2) * m).mean(dim=(1, 2, 3)).sum() / n
        feature = feature + err / (t.pow(2) * m).mean(dim=(1, 2, 3)).sum().div(n).clamp_min(1e-12)
    return pixel, feature
