"""Distillation (training/distill.py) and variants started from a trained network: a
student of another shape learns a teacher's output; the config and card carry the knobs."""

from __future__ import annotations

import csv

import pytest
import torch

from stylebox.model.checkpoint import load_checkpoint
from stylebox.model.export import export_onnx
from stylebox.training.config import ConfigError, TrainConfig
from stylebox.training.distill import Teachers, distill_loss
from stylebox.training.loop import TrainError, train


def test_plain_cards_do_not_mention_the_variant_knobs():
    cfg = TrainConfig(styles=[{"name": "a", "path": "a.jpg"}])
    card = cfg.card()
    assert card.arch == {"base_channels": [32, 64, 128], "n_residual": 5}
    assert not {"separable", "resize", "widths", "teachers"} & set(card.training)
    tuned = cfg.replace(resize="ends", separable=True, teachers=["t.onnx"]).card()
    assert tuned.arch["resize"] == "ends" and tuned.arch["separable"] is True
    assert tuned.training["teachers"] == ["t.onnx"] and "distill_weight" in tuned.training


@pytest.mark.parametrize("bad", [{"resize": "half"}, {"widths": [4, 4]}, {"distill_weight": -1},
                                 {"teachers": ["t.pt"], "temporal_weight": 1.0}])
def test_bad_variant_or_distillation_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_distill_loss_is_zero_on_the_teacher_and_counts_only_taught_samples():
    out = torch.rand(2, 3, 8, 8)
    feats = {"f": torch.rand(2, 4, 4, 4)}
    both = torch.tensor([True, True])
    pixel, feature = distill_loss(out, out.clone(), both, feats, {"f": feats["f"].clone()})
    assert pixel == 0 and feature == 0
    other = out.clone()
    other[1] += 0.5  # only the second sample differs
    assert distill_loss(out, other, torch.tensor([True, False]), feats, feats)[0] == 0
    assert distill_loss(out, other, both, feats, feats)[0] == pytest.approx(0.25)


def test_a_half_resolution_separable_student_learns_from_an_onnx_teacher(base_run):
    cfg, vgg, tmp = base_run
    teacher, card, _ = load_checkpoint(tmp / "base" / "last.pt")
    onnx = tmp / "teacher.onnx"
    export_onnx(teacher.eval(), card, onnx, export_size=32)
    student = cfg.replace(init_from=str(tmp / "base" / "last.pt"), steps=2, resize="all",
                          separable=True, teachers=[str(onnx)])
    train(student, tmp / "student", vgg=vgg, progress=False)
    gen, scard, _ = load_checkpoint(tmp / "student" / "last.pt")
    assert gen.cfg.resize == "all" and gen.cfg.separable
    assert scard.training["teachers"] == [str(onnx)]
    assert scard.training["fine_tuned_from"]["steps_done"] == 3
    with open(tmp / "student" / "log.csv") as f:
        row = list(csv.DictReader(f))[-1]
    assert float(row["distill"]) > 0 and float(row["distill_feature"]) > 0
    # the teacher's own output scores 0 against itself; the student's started near it
    teachers = Teachers([str(onnx)], card.style_names, torch.device("cpu"))
    x = torch.rand(2, 3, 32, 32)
    out, taught = teachers(x, torch.tensor([0, 1]))
    assert taught.all()
    with torch.no_grad():
        torch.testing.assert_close(out, teacher.eval()(x, torch.eye(2)), atol=1e-5, rtol=0)


def test_a_style_no_teacher_has_learns_from_the_perceptual_loss_alone(base_run, capsys):
    cfg, _, tmp = base_run
    _, card, _ = load_checkpoint(tmp / "base" / "last.pt")
    teachers = Teachers([str(tmp / "base" / "last.pt")], ["checker", "new"],
                        torch.device("cpu"))
    assert "no teacher has new" in capsys.readouterr().err
    _, taught = teachers(torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 0]))
    assert taught.tolist() == [True, False, True]


def test_init_from_a_network_of_no_common_shape_is_refused(base_run):
    cfg, vgg, tmp = base_run
    other = cfg.replace(init_from=str(tmp / "base" / "last.pt"), alpha=1.0, steps=1)
    with pytest.raises(TrainError, match="prune it first"):
        train(other, tmp / "wide", vgg=vgg, progress=False)
