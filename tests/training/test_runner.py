"""The step runner on its own: seeding, lr, log windows, saves, time limit, signals."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from stylebox.training import runner
from stylebox.training.runner import RunSettings, cosine_lr, run_steps, step_seed


def _opt() -> torch.optim.Optimizer:
    w = torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [w]}, {"params": [], "lr_scale": 10.0}], lr=1.0)


class Recorder:
    """A step function that trains nothing and returns the step index as its loss."""

    def __init__(self, opt: torch.optim.Optimizer, at=None) -> None:
        self.opt, self.at = opt, at or {}
        self.seeds, self.lrs, self.rows, self.saves = [], [], [], []

    def __call__(self, step: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        self.seeds.append(rng.initial_seed())
        self.lrs.append([g["lr"] for g in self.opt.param_groups])
        if step in self.at:
            self.at[step]()
        return {"loss": torch.tensor(float(step)), "twice": torch.tensor(2.0 * step)}

    def run(self, s: RunSettings, **kw):
        return run_steps(s, self.opt, self, on_log=self.rows.append, save=self.saves.append,
                         **kw)


def test_windows_average_on_the_device_and_saves_follow_the_cadence():
    rec = Recorder(_opt())
    s = RunSettings(steps=7, lr=0.5, schedule="cosine", log_every=3, ckpt_every=5, seed=2,
                    rank=1, seed_offset=1, progress=False)
    res = rec.run(s)
    assert (res.step, res.stopped) == (7, "done") and res.row == rec.rows[-1]
    assert [(r["step"], r["loss"], r["twice"]) for r in rec.rows] == [
        (3, 1.0, 2.0), (6, 4.0, 8.0), (7, 6.0, 12.0)]  # steps 0-2, 3-5, 6
    assert [r["lr"] for r in rec.rows] == [cosine_lr(0.5, k, 7) for k in (2, 5, 6)]
    assert rec.saves == [5, 7]
    assert rec.seeds == [step_seed(2, 1, k + 1) for k in range(7)]
    assert rec.lrs == [[cosine_lr(0.5, k, 7), cosine_lr(0.5, k, 7) * 10.0] for k in range(7)]
    again = Recorder(_opt())
    again.run(s, start=4)  # a resumed run draws the same seeds from where it left off
    assert again.seeds == rec.seeds[4:] and again.saves == [5, 7]


def test_a_cool_down_holds_the_lr_until_its_first_step_then_falls_to_a_tenth():
    s = RunSettings(steps=10, lr=0.5, schedule="cosine", decay_from=6, progress=False)
    lrs = [s.lr_at(k) for k in range(11)]
    assert lrs[:7] == [0.5] * 7  # a resumed run at step 6 goes on at its own lr
    assert all(a > b for a, b in zip(lrs[6:], lrs[7:], strict=False))
    assert lrs[10] == pytest.approx(0.05) and lrs[8] == pytest.approx(0.275)  # half way
    assert RunSettings(steps=10, lr=0.5, schedule="constant", decay_from=6).lr_at(9) == 0.5


def test_a_resumed_cool_down_fitted_to_its_budget_ends_at_a_tenth(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock["t"])
    tick = {k: lambda: clock.update(t=clock["t"] + 10) for k in range(100)}  # 10 s a step
    rec = Recorder(_opt(), at=tick)
    s = RunSettings(steps=100, lr=0.5, schedule="cosine", decay_from=10, budget_s=60,
                    log_every=100, progress=False)
    res = rec.run(s, start=10)
    assert (res.step, res.steps, res.stopped) == (16, 16, "done")  # 60 s hold 6 steps
    lrs = [lr for lr, _ in rec.lrs]
    assert lrs[0] == 0.5 and lrs[-1] == pytest.approx(cosine_lr(0.5, 15, 16, 10))
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_time_limit_stops_logs_and_saves(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock["t"])
    rec = Recorder(_opt(), at={k: lambda: clock.update(t=clock["t"] + 30) for k in range(9)})
    res = rec.run(RunSettings(steps=9, lr=1.0, log_every=100, time_limit_min=1.0,
                              progress=False))
    assert (res.step, res.stopped) == (3, "time_limit")  # 90 s > 60 s after step 3
    assert rec.saves == [3] and [r["step"] for r in rec.rows] == [3]
    assert rec.rows[0]["loss"] == 1.0  # the partial window is logged too


def test_sigterm_stops_after_the_step_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    rec = Recorder(_opt(), at={1: lambda: os.kill(os.getpid(), signal.SIGTERM)})
    res = rec.run(RunSettings(steps=9, lr=1.0, progress=False))
    assert (res.step, res.stopped) == (2, "signal") and rec.saves == [2]
    assert signal.getsignal(signal.SIGTERM) is before


def test_ddp_hook_decides_at_log_steps_only():
    asked = []

    def agree(over: bool) -> bool:  # another rank wants to stop
        asked.append(over)
        return True

    rec = Recorder(_opt())
    res = rec.run(RunSettings(steps=9, lr=1.0, log_every=4, progress=False), agree=agree)
    assert (res.step, res.stopped) == (4, "time_limit") and asked == [False]
    assert rec.saves == [4]


def test_keyboard_interrupt_saves_what_was_done():
    def interrupt():
        raise KeyboardInterrupt

    rec = Recorder(_opt(), at={3: interrupt})
    with pytest.raises(KeyboardInterrupt):
        rec.run(RunSettings(steps=9, lr=1.0, progress=False))
    assert rec.saves == [3]
