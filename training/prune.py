"""`stylebox prune`: evolutionary channel pruning of a trained generator, then fine-tuning.

    stylebox prune --model models/stylebox-a1.onnx --config configs/default.toml \\
        --out runs/prune --max-params 114371 --train-minutes 10

A candidate is a keep/drop bit per channel of every prunable group (GeneratorConfig.groups:
each conv's output channels; the residual stream is one group, because every block adds
into it). Dropping a channel's output is exactly removing the channel (its values after the
norm and ReLU become 0, so the next conv gets nothing from it, and instance norm of the other
channels does not see it), so a candidate is scored on the unpruned network with masks, and
the winner is cut out for real (model/surgery.py; the CIN tables lose the same columns).

Fitness (lower is better) = perceptual error + gamma * cost, where the error is the mean
relative VGG feature error (at the config's style layers, relu1_1 ... relu5_1) of the masked
network's output against the unpruned output, over every style on --photos training
photos, and cost is the share of parameters kept (or of multiply-adds, `--cost macs`, which
track CPU latency better; timing hundreds of candidates on a shared CPU would measure the
neighbours). --max-params is a hard
budget: a candidate above it drops random channels until it fits (so searched and uniform
networks can be compared at equal size). The search: a population seeded half from the
channels' γ magnitude at random keep fractions and half at random, tournament selection,
uniform crossover, bit-flip mutation, the best two kept (elitism). Each generation prints
the best candidate's error, size and channel counts, and OUT/search.csv logs them.

--uniform skips the search: the same fraction of every group, the channels with the largest
|γ| (the uniform-width baseline, what the width multiplier would give). Then --train-minutes
fine-tunes the cut network with distillation from the unpruned model (training/distill.py)
and the perceptual loss; the result is OUT/train/last.pt, for `stylebox export`.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylebox.errors import UserError, doc_parser
from stylebox.model.card import ModelCard
from stylebox.model.checkpoint import load_generator, save_checkpoint
from stylebox.model.network import ConvCIN, Generator, GeneratorConfig, one_hot
from stylebox.model.surgery import layer_groups, transplant
from stylebox.training.config import TrainConfig
from stylebox.training.data import list_photos
from stylebox.training.distill import distill_loss
from stylebox.training.eval import load_photo
from stylebox.training.vgg import load_vgg

SEARCH_FIELDS = ["generation", "best_fitness", "best_error", "best_params", "best_macs",
                 "mean_fitness", "seconds", "widths"]


class PruneError(UserError):
    pass


# -- sizes --------------------------------------------------------------------------------
def conv_shapes(cfg: GeneratorConfig, widths: list[int]) -> list[tuple[int, int, int, bool]]:
    """(cin, cout, k, has CIN) of every conv of a dense network with these group widths."""
    ch = dict(zip(cfg.groups(), widths, strict=True))
    s = ch["stream"]
    convs = [(3, ch["down.0"], 9, True), (ch["down.0"], ch["down.1"], 3, True),
             (ch["down.1"], s, 3, True)]
    for i in range(cfg.n_residual):
        convs += [(s, ch[f"res.{i}"], 3, True), (ch[f"res.{i}"], s, 3, True)]
    return convs + [(s, ch["up.0"], 3, True), (ch["up.0"], ch["up.1"], 3, True),
                    (ch["up.1"], 3, 9, False)]


# Pixels each conv runs at, per input pixel (in forward order): full, 1/4, 1/16 ... back.
def _scales(n_res: int) -> list[float]:
    return [1, 1 / 4, 1 / 16] + [1 / 16] * (2 * n_res) + [1 / 4, 1, 1]


def param_count(cfg: GeneratorConfig, widths: list[int]) -> int:
    return sum(co * ci * k * k + co + (2 * cfg.n_styles * co if cin else 0)
               for ci, co, k, cin in conv_shapes(cfg, widths))


def macs_per_pixel(cfg: GeneratorConfig, widths: list[int]) -> float:
    return sum(co * ci * k * k * sc for (ci, co, k, _), sc in
               zip(conv_shapes(cfg, widths), _scales(cfg.n_residual), strict=True))


# -- masks --------------------------------------------------------------------------------
def writers(gen: Generator) -> dict[str, list[ConvCIN]]:
    """Each channel group's layers, those whose outputs are its channels (model/surgery.py's
    layer_groups, read the other way)."""
    out: dict[str, list[ConvCIN]] = {g: [] for g in gen.cfg.groups()}
    for name, (_, group) in layer_groups(gen).items():
        if group in out:  # not the RGB output
            out[group].append(gen.get_submodule(name))
    return out


class Masked:
    """The unpruned generator with a keep mask per channel group, applied by forward hooks
    on the layers whose outputs are the group's channels."""

    def __init__(self, gen: Generator):
        self.gen, cfg = gen, gen.cfg
        self.sizes = [cfg.channels()[g] for g in cfg.groups()]
        self.masks = {g: torch.ones(n) for g, n in zip(cfg.groups(), self.sizes, strict=True)}
        for group, layers in writers(gen).items():
            for layer in layers:
                layer.register_forward_hook(self._hook(group))

    def _hook(self, group: str):
        def hook(_module: ConvCIN, _args, out: torch.Tensor) -> torch.Tensor:
            return out * self.masks[group][None, :, None, None].to(out.dtype)
        return hook

    def split(self, bits: np.ndarray) -> dict[str, np.ndarray]:
        """All groups' bits, concatenated -> each group's."""
        return dict(zip(self.masks, np.split(bits, np.cumsum(self.sizes)[:-1]), strict=True))

    def set(self, bits: np.ndarray) -> None:
        for g, part in self.split(bits).items():
            self.masks[g] = torch.from_numpy(part.astype(np.float32))

    def widths(self, bits: np.ndarray) -> list[int]:
        return [int(p.sum()) for p in self.split(bits).values()]


def importance(gen: Generator) -> np.ndarray:
    """Per channel (all groups, concatenated): the mean |γ| over styles of the layers that
    write it (a channel every style scales to almost 0 carries little)."""
    return np.concatenate([sum(m.norm.gamma.detach().abs().mean(0) for m in layers).numpy()
                           for layers in writers(gen).values()])


def keep_indices(masked: Masked, bits: np.ndarray) -> dict[str, torch.Tensor]:
    return {g: torch.from_numpy(np.flatnonzero(p)) for g, p in masked.split(bits).items()}


# -- the search ---------------------------------------------------------------------------
@dataclass
class SearchSettings:
    population: int = 16
    generations: int = 20
    mutation: float = 0.01  # per-bit flip probability
    gamma: float = 0.5  # weight of the cost share in the fitness
    cost: str = "params"  # or "macs"
    max_params: int = 0  # 0 = no hard budget
    seed: int = 0


class Search:
    def __init__(self, gen: Generator, photos: torch.Tensor, vgg, s: SearchSettings):
        self.gen, self.s = gen.eval(), s
        self.cfg = gen.cfg
        self.masked = Masked(gen)
        self.n_bits = sum(self.masked.sizes)
        self.rng = np.random.default_rng(s.seed)
        self.imp = importance(gen)
        n, b = self.cfg.n_styles, photos.shape[0]
        self.x = photos.repeat(n, 1, 1, 1)  # (n * b, 3, S, S): every photo in every style
        self.w = one_hot(np.repeat(np.arange(n), b).tolist(), n)  # (n * b, N)
        self.vgg = vgg
        with torch.no_grad():
            self.ref = gen(self.x, self.w)
            self.ref_feats = vgg(self.ref)
        full = self.masked.sizes
        self.full_params = param_count(self.cfg, full)
        self.full_macs = macs_per_pixel(self.cfg, full)

    def cost(self, widths: list[int]) -> float:
        if self.s.cost == "macs":
            return macs_per_pixel(self.cfg, widths) / self.full_macs
        return param_count(self.cfg, widths) / self.full_params

    @torch.no_grad()
    def error(self, bits: np.ndarray) -> float:
        self.masked.set(bits)
        out = self.gen(self.x, self.w)
        taught = torch.ones(len(out), dtype=torch.bool)
        return float(distill_loss(out, self.ref, taught, self.vgg(out), self.ref_feats)[1]
                     / len(self.ref_feats))

    def fitness(self, bits: np.ndarray) -> tuple[float, float]:
        err = self.error(bits)
        return err + self.s.gamma * self.cost(self.masked.widths(bits)), err

    def repair(self, bits: np.ndarray) -> np.ndarray:
        """At least one channel per group; under --max-params by dropping random channels."""
        bits = bits.copy()
        offsets = np.cumsum([0] + self.masked.sizes)
        for a, b in zip(offsets[:-1], offsets[1:], strict=True):
            if not bits[a:b].any():
                bits[a + int(np.argmax(self.imp[a:b]))] = 1
        if self.s.max_params:
            while param_count(self.cfg, self.masked.widths(bits)) > self.s.max_params:
                kept = np.flatnonzero(bits)
                # never empty a group
                counts = np.array(self.masked.widths(bits))
                group = np.searchsorted(offsets, kept, side="right") - 1
                kept = kept[counts[group] > 1]
                bits[self.rng.choice(kept, size=max(1, len(kept) // 64), replace=False)] = 0
        return bits

    def seed_population(self) -> list[np.ndarray]:
        pop, offsets = [], np.cumsum([0] + self.masked.sizes)
        for i in range(self.s.population):
            frac = self.rng.uniform(0.1, 0.6)
            if i % 2 == 0:  # the most important channels of every group, at this fraction
                bits = np.zeros(self.n_bits, np.uint8)
                for a, b in zip(offsets[:-1], offsets[1:], strict=True):
                    k = max(1, round((b - a) * frac))
                    bits[a + np.argsort(-self.imp[a:b])[:k]] = 1
            else:
                bits = (self.rng.random(self.n_bits) < frac).astype(np.uint8)
            pop.append(self.repair(bits))
        return pop

    def run(self, log=None) -> tuple[np.ndarray, float]:
        pop = self.seed_population()
        scored = [(*self.fitness(b), b) for b in pop]
        t0 = time.monotonic()
        for gen_i in range(self.s.generations + 1):
            scored.sort(key=lambda t: t[0])
            best_f, best_e, best = scored[0]
            widths = self.masked.widths(best)
            row = {"generation": gen_i, "best_fitness": round(best_f, 5),
                   "best_error": round(best_e, 5),
                   "best_params": param_count(self.cfg, widths),
                   "best_macs": round(macs_per_pixel(self.cfg, widths)),
                   "mean_fitness": round(float(np.mean([t[0] for t in scored])), 5),
                   "seconds": round(time.monotonic() - t0, 1),
                   "widths": " ".join(map(str, widths))}
            if log:
                log(row)
            if gen_i == self.s.generations:
                break
            children = [t[2] for t in scored[:2]]  # elitism
            while len(children) < self.s.population:
                a, b = self._pick(scored), self._pick(scored)
                child = np.where(self.rng.random(self.n_bits) < 0.5, a, b)
                flip = self.rng.random(self.n_bits) < self.s.mutation
                children.append(self.repair(np.where(flip, 1 - child, child).astype(np.uint8)))
            scored = scored[:2] + [(*self.fitness(c), c) for c in children[2:]]
        return scored[0][2], scored[0][1]

    def _pick(self, scored, k: int = 3) -> np.ndarray:
        idx = self.rng.choice(len(scored), size=k, replace=False)
        return min((scored[i] for i in idx), key=lambda t: t[0])[2]

    def uniform(self) -> np.ndarray:
        """The same keep fraction in every group (largest |γ| first), as large as fits
        --max-params (or half, without one)."""
        offsets = np.cumsum([0] + self.masked.sizes)

        def at(frac: float) -> np.ndarray:
            bits = np.zeros(self.n_bits, np.uint8)
            for a, b in zip(offsets[:-1], offsets[1:], strict=True):
                bits[a + np.argsort(-self.imp[a:b])[:max(1, round((b - a) * frac))]] = 1
            return bits

        if not self.s.max_params:
            return at(0.5)
        lo, hi = 0.0, 1.0
        for _ in range(30):
            mid = (lo + hi) / 2
            fits = param_count(self.cfg, self.masked.widths(at(mid))) <= self.s.max_params
            lo, hi = (mid, hi) if fits else (lo, mid)
        return at(lo)


def cut(gen: Generator, card: ModelCard, masked: Masked, bits: np.ndarray
        ) -> tuple[Generator, ModelCard]:
    """The pruned network for real: its own widths, the kept channels' weights."""
    widths = masked.widths(bits)
    cfg = GeneratorConfig.from_dict({**gen.cfg.to_dict(), "widths": widths})
    small = Generator(cfg)
    for m in masked.masks:
        masked.masks[m] = torch.ones_like(masked.masks[m])  # the source is whole again
    fresh = transplant(gen, small, keep_indices(masked, bits))
    if fresh:
        raise PruneError(f"cutting left tensors unfilled: {fresh}")
    new = ModelCard.from_dict({**card.to_dict(), "arch": cfg.arch(), "export": {},
                               "name": f"{card.name}-pruned"})
    return small, new


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox prune", __doc__)
    p.add_argument("--model", required=True, help="the trained generator (.onnx or .pt)")
    p.add_argument("--config", help="training config with the styles' images (needed by "
                                    "--train-minutes; default configs/default.toml)",
                   default="configs/default.toml")
    p.add_argument("--out", required=True, help="folder: search.csv, pruned.pt, train/")
    p.add_argument("--photos", type=int, default=2, help="training photos in the fitness")
    p.add_argument("--size", type=int, default=64, help="their side, px")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--mutation", type=float, default=0.01, help="per-bit flip probability")
    p.add_argument("--gamma", type=float, default=0.5, help="weight of the cost share")
    p.add_argument("--cost", choices=("params", "macs"), default="params")
    p.add_argument("--max-params", type=int, default=0, help="hard parameter budget")
    p.add_argument("--uniform", action="store_true",
                   help="no search: one keep fraction for every group (the baseline)")
    p.add_argument("--train-minutes", type=float, default=0.0,
                   help="then fine-tune this long with distillation from --model")
    p.add_argument("--data-root", help="folder with train-photos/, styles/, vgg/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="training config overrides for the fine-tuning")
    args = p.parse_args(argv)

    cfg = TrainConfig.load(args.config, args.set)
    if args.data_root:
        cfg = cfg.replace(data_root=args.data_root)
    cfg.check_data_root()
    gen, card = load_generator(args.model)
    if gen.cfg.separable or gen.cfg.resize != "none" or gen.cfg.widths:
        raise PruneError(f"{args.model} is a variant ({card.arch}); prune a dense network")
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    files = list_photos(cfg.resolve(cfg.photos))
    pick = np.random.default_rng(args.seed).choice(len(files), size=min(args.photos, len(files)),
                                                   replace=False)
    photos = torch.stack([torch.tensor(load_photo(files[i], args.size)).permute(2, 0, 1)
                          for i in sorted(pick)]).float() / 255  # (P, 3, S, S)
    vgg = load_vgg(cfg.resolve(cfg.vgg_weights), cfg.style_layers)
    s = SearchSettings(args.population, args.generations, args.mutation, args.gamma, args.cost,
                       args.max_params, args.seed)
    search = Search(gen, photos, vgg, s)
    print(f"stylebox prune: {card.name}, {search.full_params:,} parameters, groups "
          + " ".join(f"{g}={n}" for g, n in zip(gen.cfg.groups(), search.masked.sizes,
                                                   strict=True)), file=sys.stderr)

    if args.uniform:
        bits = search.uniform()
        err = search.error(bits)
        print(f"uniform: error {err:.4f}, {param_count(gen.cfg, search.masked.widths(bits)):,}"
              f" parameters, widths {search.masked.widths(bits)}", file=sys.stderr)
    else:
        with open(out / "search.csv", "w", newline="") as f:
            log = csv.DictWriter(f, SEARCH_FIELDS)
            log.writeheader()

            def show(row: dict) -> None:
                log.writerow(row)
                f.flush()
                print(f"gen {row['generation']:>3}/{s.generations}  best {row['best_fitness']:.4f}"
                      f" (error {row['best_error']:.4f}, {row['best_params']:,} params = "
                      f"{row['best_params'] / search.full_params:.1%})  mean "
                      f"{row['mean_fitness']:.4f}  {row['seconds']:.0f} s  widths "
                      f"{row['widths']}", file=sys.stderr)

            bits, err = search.run(show)

    small, new_card = cut(gen, card, search.masked, bits)
    widths = search.masked.widths(bits)
    new_card.training["pruned_from"] = {
        "name": card.name, "model": str(args.model), "method": "uniform" if args.uniform
        else "evolutionary", "error": round(err, 5), "params": param_count(gen.cfg, widths),
        "source_params": search.full_params,
        **({} if args.uniform else {"population": s.population, "generations": s.generations,
                                     "gamma": s.gamma, "cost": s.cost}),
        **({"max_params": s.max_params} if s.max_params else {})}
    ckpt = out / "pruned.pt"
    train_cfg = cfg.replace(alpha=card.alpha, widths=widths, name=new_card.name)
    save_checkpoint(ckpt, small, new_card, config=train_cfg.to_dict())
    print(f"stylebox prune: wrote {ckpt} ({param_count(gen.cfg, widths):,} parameters, "
          f"widths {dict(zip(gen.cfg.groups(), widths, strict=True))})")
    if args.train_minutes > 0:
        from stylebox.training.loop import train

        tcfg = train_cfg.replace(init_from=str(ckpt), teachers=[str(args.model)],
                                 time_limit_min=args.train_minutes,
                                 steps=max(cfg.steps, math.ceil(args.train_minutes * 600)))
        summary = train(tcfg, out / "train")
        print(f"stylebox prune: fine-tuned {summary['step']} steps; {summary['checkpoint']}")
    return 0
