"""`stylebox prune` (training/prune.py): masks are exact removals, the search keeps to its
budget and improves, the cut network fine-tunes from the unpruned one."""

from __future__ import annotations

import csv

import numpy as np
import torch

from stylebox.model.checkpoint import load_checkpoint, save_checkpoint
from stylebox.model.network import one_hot
from stylebox.training.config import TrainConfig
from stylebox.training.prune import (
    Masked,
    Search,
    SearchSettings,
    cut,
    macs_per_pixel,
    main,
    param_count,
)
from tests.conftest import (
    make_tiny_card,
    make_tiny_generator,
    make_train_data,
    random_vgg,
    write_train_config,
)


def test_counts_match_the_real_network():
    g = make_tiny_generator()
    cfg = g.cfg
    widths = [3, 5, 7, 2, 9, 4, 6]
    small = make_tiny_generator(widths=widths)
    assert param_count(cfg, widths) == sum(p.numel() for p in small.parameters())
    full = [cfg.channels()[k] for k in cfg.groups()]
    assert param_count(cfg, full) == sum(p.numel() for p in g.parameters())
    assert macs_per_pixel(cfg, widths) < macs_per_pixel(cfg, full)


def test_a_masked_channel_is_a_removed_channel():
    """The search scores masks on the whole network; the cut network computes the same."""
    g = make_tiny_generator()
    masked = Masked(g)
    bits = (np.random.default_rng(0).random(sum(masked.sizes)) < 0.4).astype(np.uint8)
    masked.set(bits)
    x, w = torch.rand(2, 3, 36, 44), one_hot([0, 2], 3)
    with torch.no_grad():
        expect = g(x, w)
    small, card = cut(g, make_tiny_card(), masked, bits)
    assert card.arch["widths"] == masked.widths(bits) and card.name.endswith("-pruned")
    with torch.no_grad():
        torch.testing.assert_close(small(x, w), expect, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(g(x, w), expect)  # the source is whole again


def test_the_search_keeps_the_budget_and_never_gets_worse():
    g = make_tiny_generator()
    vgg = random_vgg(["relu1_1", "relu2_1"])
    budget = param_count(g.cfg, [g.cfg.channels()[k] for k in g.cfg.groups()]) // 4
    s = SearchSettings(population=6, generations=4, max_params=budget, seed=1)
    search = Search(g, torch.rand(2, 3, 32, 32), vgg, s)
    rows = []
    bits, err = search.run(rows.append)
    assert param_count(g.cfg, search.masked.widths(bits)) <= budget
    assert min(search.masked.widths(bits)) >= 1  # no group emptied
    best = [r["best_fitness"] for r in rows]
    assert len(rows) == 5 and best == sorted(best, reverse=True)  # elitism: monotone
    assert err > 0 and err == rows[-1]["best_error"] or abs(err - rows[-1]["best_error"]) < 1e-4
    uniform = search.uniform()
    widths = search.masked.widths(uniform)
    assert param_count(g.cfg, widths) <= budget
    fracs = [w / n for w, n in zip(widths, search.masked.sizes, strict=True)]
    assert max(fracs) - min(fracs) < 0.2  # one fraction everywhere (rounded)


def test_prune_command_searches_cuts_and_fine_tunes(tmp_path, monkeypatch, capsys):
    data = make_train_data(tmp_path / "data")
    cfg_path = write_train_config(data, n_residual=2, steps=2)
    cfg = TrainConfig.load(cfg_path)
    g = make_tiny_generator(n_styles=2)
    card = cfg.card()
    save_checkpoint(tmp_path / "src.pt", g, card)
    monkeypatch.setattr("stylebox.training.prune.load_vgg",
                        lambda _src, layers: random_vgg(layers))
    monkeypatch.setattr("stylebox.training.loop.PerceptualLoss.from_config",
                        classmethod(lambda cls, c, vgg=None: cls(
                            random_vgg(c.content_layers + c.style_layers), c.content_layers,
                            c.style_layers)))
    out = tmp_path / "prune"
    assert main(["--model", str(tmp_path / "src.pt"), "--config", str(cfg_path), "--out",
                 str(out), "--population", "4", "--generations", "2", "--size", "32",
                 "--max-params", "20000", "--train-minutes", "0.005"]) == 0
    err = capsys.readouterr().err
    assert "gen   2/2" in err and "widths" in err
    with open(out / "search.csv") as f:
        assert [int(r["generation"]) for r in csv.DictReader(f)] == [0, 1, 2]
    small, pcard, state = load_checkpoint(out / "pruned.pt")
    assert sum(p.numel() for p in small.parameters()) <= 20000
    assert pcard.training["pruned_from"]["method"] == "evolutionary"
    tuned, tcard, _ = load_checkpoint(out / "train" / "last.pt")
    assert tcard.arch["widths"] == pcard.arch["widths"]
    assert tcard.training["teachers"] == [str(tmp_path / "src.pt")]
    assert tcard.training["fine_tuned_from"]["name"] == pcard.name
    assert tcard.training["fine_tuned_from"]["pruned_from"]["params"] <= 20000
    # and the uniform baseline at the same budget
    assert main(["--model", str(tmp_path / "src.pt"), "--config", str(cfg_path), "--out",
                 str(tmp_path / "uni"), "--uniform", "--size", "32",
                 "--max-params", "20000"]) == 0
    assert load_checkpoint(tmp_path / "uni" / "pruned.pt")[1].training["pruned_from"][
        "method"] == "uniform"
