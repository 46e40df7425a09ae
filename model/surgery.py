"""Carry trained weights into another generator shape: the start of a cheaper variant.

A variant trained from scratch on a CPU budget loses to one that starts from a trained
network, so `stylebox train --init-from` and `stylebox prune` start every variant from the
closest trained weights (``transplant``):

- same name, same shape: copied. This alone starts the alias-free form (``blur`` before the
  strided convs, ``up_blur`` after the upsamples) from any trained checkpoint: the low-passes
  are fixed and hold no tensors, so every trained weight carries over as it is;
- a dense k x k kernel into a separable conv (``separable``): for each input channel i the
  (Cout, k*k) slice W[:, i] is replaced by its best rank-1 approximation u s v^T (SVD), whose
  v is the depthwise kernel and u s the pointwise column: the separable conv is the dense one
  with each input channel's filters forced to share one spatial shape;
- the 3-channel last conv into the 12-channel sub-pixel conv of ``resize="all"``: each RGB
  filter is repeated for the 4 sub-pixel positions (ICNR, Aitken et al. 2017), so the new
  network starts as the old one run at half resolution and upsampled (no checkerboard);
- a last conv nothing can be copied into (``resize="ends"``): ``fit_head`` solves it by
  least squares against the trained network's logits, through the low-pass after the
  depth-to-space where there is one (``up_blur``, the alias-free form);
- ``keep``: per channel group (GeneratorConfig.groups), the indices of the channels kept
  (channel pruning): every tensor is sliced along the channels it has of that group, the γ/β
  tables' columns with them.

Anything else (a layer the source lacks) keeps its fresh initialisation and is reported.
"""

from __future__ import annotations

import torch

from stylebox.model.network import Generator


# Each conv's (input group, output group); "rgb" is never pruned.
def layer_groups(gen: Generator) -> dict[str, tuple[str, str]]:
    n = gen.cfg.n_residual
    io = {"down.0": ("rgb", "down.0"), "down.1": ("down.0", "down.1"),
          "down.2": ("down.1", "stream"), "up.0": ("stream", "up.0"),
          "up.1": ("up.0", "up.1"), "out_conv": ("up.1", "rgb")}
    for i in range(n):
        io[f"res.{i}.a"] = ("stream", f"res.{i}")
        io[f"res.{i}.b"] = (f"res.{i}", "stream")
    return io


def _owner(name: str) -> str:
    """'res.2.a.conv.weight' -> 'res.2.a'; 'out_conv.bias' -> 'out_conv'."""
    parts = name.split(".")
    if parts[0] == "res":
        return ".".join(parts[:3])
    return parts[0] if parts[0] == "out_conv" else ".".join(parts[:2])


def _slice(t: torch.Tensor, name: str, io: tuple[str, str],
           keep: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cut a source tensor down to the kept channels of its input and output groups."""
    g_in, g_out = io
    if name.endswith(("gamma", "beta")):  # (N, C): C are the layer's output channels
        return t[:, keep[g_out]] if g_out in keep else t
    if g_out in keep:  # conv weight (Cout, Cin, k, k) or bias (Cout,)
        t = t[keep[g_out]]
    if t.dim() == 4 and g_in in keep:
        t = t[:, keep[g_in]]
    return t


def factorise(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense (Cout, Cin, k, k) -> depthwise (Cin, 1, k, k), pointwise (Cout, Cin, 1, 1): the
    best rank-1 approximation of each input channel's (Cout, k*k) slice."""
    cout, cin, k, _ = w.shape
    dw, pw = torch.empty(cin, 1, k, k), torch.empty(cout, cin, 1, 1)
    for i in range(cin):
        u, s, vh = torch.linalg.svd(w[:, i].reshape(cout, k * k).float(), full_matrices=False)
        dw[i, 0] = vh[0].reshape(k, k)
        pw[:, i, 0, 0] = u[:, 0] * s[0]
    return dw, pw


@torch.no_grad()
def transplant(src: Generator, dst: Generator,
               keep: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Fill `dst` from `src` (see the module docstring); returns the names of dst's
    parameters that nothing in src could fill."""
    keep = keep or {}
    io = layer_groups(src)
    have = {n: _slice(t, n, io[_owner(n)], keep) for n, t in src.state_dict().items()}
    fresh = []
    dst_state = dst.state_dict()
    for name, target in dst_state.items():
        base = name.replace(".depthwise.", ".").replace(".pointwise.", ".")
        t = have.get(base)
        if t is not None and ".depthwise." in name and t.dim() == 4 and t.shape[-1] > 1:
            t = factorise(t)[0]
        elif t is not None and ".pointwise." in name and t.dim() == 4 and t.shape[-1] > 1:
            t = factorise(t)[1]
        if t is not None and name.startswith("out_conv") and t.shape[0] * 4 == target.shape[0]:
            t = t.repeat_interleave(4, dim=0)  # ICNR: the same RGB filter at all 4 positions
        if t is None or t.shape != target.shape:
            fresh.append(name)
            continue
        target.copy_(t)
    return fresh


@torch.no_grad()
def fit_head(src: Generator, dst: Generator, photos: torch.Tensor) -> float:
    """Least-squares start for a last conv nothing could be copied into (``resize="ends"``).

    On `photos` (B, 3, H, W) in every style, the dense k x k conv that maps dst's features
    before its last conv to src's output logits (before the sigmoid; 4 sub-pixel positions
    per feature pixel) is solved in closed form, then written into dst's last conv (factorised
    when it is separable). A fresh last conv would otherwise make the first hundreds of
    fine-tuning steps relearn colour. Returns the fit's RMS error in logits.

    With dst's low-pass after the depth-to-space (``out_blur``, the alias-free form) the fit
    is made through it: conv -> depth-to-space -> low-pass is still linear in the conv's
    weights, so the conv solved is the one whose *filtered* output best matches src's logits
    (fitting before the filter would start the network one low-pass blurrier than src).
    """
    n = src.cfg.n_styles
    x = photos.repeat(n, 1, 1, 1)  # (n * B, 3, H, W): every photo in every style
    w = torch.eye(n).repeat_interleave(len(photos), 0)  # (n * B, N)
    logits, feats = {}, {}
    h1 = src.out_conv.register_forward_hook(lambda m, a, o: logits.setdefault("y", o))
    h2 = dst.out_pad.register_forward_hook(lambda m, a, o: feats.setdefault("f", o))
    try:
        src(x, w)
        dst(x, w)
    finally:
        h1.remove()
        h2.remove()
    f, y = feats["f"], logits["y"]  # (B', C, h + 2p, w + 2p), (B', 3, H', W')
    r = 1 if dst.shuffle is None else dst.shuffle.upscale_factor
    k = f.shape[-1] - (y.shape[-1] // r) + 1  # the kernel the padding was made for
    hh, ww = f.shape[-2] - k + 1, f.shape[-1] - k + 1
    cols = torch.nn.functional.unfold(f, k)  # (B', C * k * k, hh * ww)
    blur = getattr(dst, "out_blur", None)
    if blur is not None:
        sol, rms = _fit_through_low_pass(cols, y, hh, ww, r, blur)
    else:
        a = torch.cat([cols.transpose(1, 2).reshape(-1, cols.shape[1]),
                       torch.ones(cols.shape[0] * cols.shape[2], 1)], 1)  # (P, C k k + 1)
        y = y[:, :, :hh * r, :ww * r]
        if r > 1:
            y = torch.nn.functional.pixel_unshuffle(y, r)  # (B', 3 r r, hh, ww)
        b = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])  # (P, 3 r r)
        sol = torch.linalg.lstsq(a.double(), b.double()).solution.float()  # (C k k + 1, 3 r r)
        rms = float((a @ sol - b).pow(2).mean().sqrt())
    weight = sol[:-1].T.reshape(-1, f.shape[1], k, k)
    conv = dst.out_conv
    if hasattr(conv, "depthwise"):
        dw, pw = factorise(weight)
        conv.depthwise.weight.copy_(dw)
        conv.pointwise.weight.copy_(pw)
        conv.pointwise.bias.copy_(sol[-1])
    else:
        conv.weight.copy_(weight)
        conv.bias.copy_(sol[-1])
    return rms


def _fit_through_low_pass(cols: torch.Tensor, y: torch.Tensor, hh: int, ww: int, r: int,
                          blur: torch.nn.Module) -> tuple[torch.Tensor, float]:
    """The last conv's (C k k + 1, 3 r r) solution when its output is depth-to-spaced, then
    low-passed (``blur``, depthwise, the same for every colour) before it meets `y`.

    Sub-pixel channel 3-colour c, position p is r * r * c + p (PixelShuffle's layout), and
    colour c of the output only sees channels of colour c, so the three colours share one
    design matrix: column (p, j) is feature column j written at sub-pixel position p of an
    otherwise zero full-resolution image, then low-passed. That matrix is 4x taller and 4x
    wider than the unfiltered one, so it is accumulated as normal equations per image (in
    float64) rather than held whole. Returns the solution and the RMS error in logits."""
    bsz, d = cols.shape[0], cols.shape[1] + 1  # + 1: the bias column
    hr, wr = hh * r, ww * r
    y = y[:, :, :hr, :wr]
    oh, ow = y.shape[-2], y.shape[-1]  # src's output may be smaller than dst's grid
    feats = torch.cat([cols, torch.ones(bsz, 1, hh * ww)], 1).reshape(bsz, d, hh, ww)
    gram = torch.zeros(r * r * d, r * r * d, dtype=torch.float64)
    rhs = torch.zeros(r * r * d, 3, dtype=torch.float64)
    kernel = blur.kernel[:1].double()  # (1, 1, t, t): the same for every channel
    pad = blur.pad

    def design(i: int) -> torch.Tensor:  # (oh * ow, r r d): image i's filtered columns
        g = feats[i].double()  # (d, hh, ww)
        out = torch.zeros(r * r, d, hr, wr, dtype=torch.float64)
        for p in range(r * r):
            out[p, :, p // r::r, p % r::r] = g
        out = torch.nn.functional.conv2d(pad(out.reshape(-1, 1, hr, wr)), kernel)
        return out.reshape(r * r * d, hr, wr)[:, :oh, :ow].reshape(r * r * d, -1).T

    for i in range(bsz):
        a = design(i)
        b = y[i].double().reshape(3, -1).T  # (oh * ow, 3)
        gram += a.T @ a
        rhs += a.T @ b
    # A ridge, because the low-pass hides things: [1, 2, 1] x [1, 2, 1] removes the
    # checkerboard (-1)^(x + y) entirely, so biases +1, -1, -1, +1 at the four positions (and
    # features times them, nearly) change little or nothing the fit sees. Unregularised, the
    # solve fills those directions with large weights that the low-pass then (mostly) cancels:
    # on the a0.25 steady checkpoint 6 logits RMS of checkerboard before the filter, and the
    # part it lets through flickers. 1e-2 of the mean diagonal: 1.3 logits left, the 1-px pan
    # flicker of the untrained start 3.6 instead of 4.9 (1e-9), for a held-out fit error of
    # 0.687 instead of 0.684 logits (a fit that ignores the filter: 0.697).
    ridge = 1e-2 * gram.diagonal().mean() * torch.eye(len(gram), dtype=torch.float64)
    sol = torch.linalg.solve(gram + ridge, rhs)  # (r r d, 3): rows (p, j), columns colour
    err = sum(float((design(i) @ sol - y[i].double().reshape(3, -1).T).pow(2).sum())
              for i in range(bsz))
    # -> (d, 3 r r) with columns in PixelShuffle's order, colour-major: c * r * r + p
    sol = sol.reshape(r * r, d, 3).permute(1, 2, 0).reshape(d, 3 * r * r).float()
    return sol, (err / (bsz * 3 * oh * ow)) ** 0.5
