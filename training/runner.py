"""The step runner every training mode shares: `stylebox train`, `stylebox add-style`, and
whatever comes next plugs its loss in as a step function.

The runner owns what must be the same everywhere: the data stream reseeded from
(seed, rank, step) every step, so a run stopped and resumed from a checkpoint ends with the
same weights as one uninterrupted run; the lr schedule; loss averages summed on the device
with one host sync per log window; the progress bar; the time limit and SIGTERM/SIGINT stop;
and when to save. A mode keeps only what is its own: its model and optimiser, a step function
(forward, loss, backward, optimiser step), its log format (`on_log`) and checkpoint (`save`).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

# (0-based index of the step, the data generator seeded for it) -> named scalar losses.
StepFn = Callable[[int, torch.Generator], dict[str, torch.Tensor]]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(name: str, d: Dist) -> torch.device:
    """`auto`, `cpu`, `cuda`...; under DDP each process takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and d.world > 1:
        name = f"cuda:{d.local_rank}"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is not None:  # set_device refuses a bare "cuda"
        torch.cuda.set_device(dev)
    return dev


def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed << 40) ^ (rank << 32) ^ step


def cosine_lr(lr: float, step: int, steps: int, start: int = 0) -> float:
    """`lr` at 0-based `step` of `steps`: `lr` until `start`, then a cosine down to lr / 10
    at `steps` (a `start` past 0 cools a resumed run down from where it stands)."""
    if step <= start:
        return lr
    done = min((step - start) / max(steps - start, 1), 1.0)
    return lr * (0.1 + 0.45 * (1 + math.cos(math.pi * done)))


class StopSignal:
    """`with StopSignal() as stop:` SIGTERM/SIGINT set `stop.signum` instead of killing the
    step: the runner saves and stops.

    `nohup ... &` runs start with SIGINT ignored (a shell gives background jobs SIG_IGN),
    so `kill PID` (SIGTERM) is the way to stop one: it ends at the next step with a checkpoint.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame) -> None:
        self.signum = signum
        self.__exit__()  # a second Ctrl-C interrupts at once, as usual

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


def any_rank(device: torch.device) -> Callable[[bool], bool]:
    """A stop hook for DDP: stop when any rank wants to, or the others would wait forever."""
    def agree(over: bool) -> bool:
        flag = torch.tensor([float(over)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
    return agree


@dataclass(frozen=True)
class RunSettings:
    steps: int  # run until this many steps are done
    lr: float  # each param group gets lr_at(step) * its "lr_scale" (default 1)
    schedule: str = "constant"  # or "cosine": to lr / 10 at `steps`
    decay_from: int = 0  # the cosine's first step
    log_every: int = 50
    ckpt_every: int = 1000
    time_limit_min: float = 0.0  # 0 = none
    seed: int = 0
    rank: int = 0
    seed_offset: int = 0  # add-style has always seeded its step k (0-based) as k + 1
    main: bool = True  # only the main process logs and shows a bar
    progress: bool = True
    desc: str | None = None

    # Fit the step count to this many seconds (0 = no): after CALIBRATE steps the run knows
    # its pace on this machine and plans min(steps, what fits); the cosine follows the plan.
    budget_s: float = 0.0

    def lr_at(self, step: int, steps: int | None = None) -> float:
        steps = steps or self.steps
        if self.schedule == "cosine":
            return cosine_lr(self.lr, step, steps, self.decay_from)
        return self.lr

    def fitted(self, done: int, start: int, seconds: float) -> int:
        """The steps to plan when `done - start` steps took `seconds`: what the budget holds
        at that pace, at least one more than done, at most `steps`."""
        pace = seconds / max(done - start, 1)
        return max(done + 1, min(self.steps, start + int(self.budget_s / max(pace, 1e-9))))


CALIBRATE = 3  # steps timed before a budget fixes the plan (the first one warms up too)


@dataclass
class RunResult:
    step: int  # steps done
    steps: int = 0  # steps planned (RunSettings.steps, or what its budget held)
    stopped: str = "done"  # or "time_limit", "signal"
    row: dict = field(default_factory=dict)  # the last log row


def run_steps(s: RunSettings, opt: torch.optim.Optimizer, step_fn: StepFn, *, start: int = 0,
              on_log: Callable[[dict], None] | None = None,
              save: Callable[[int], None] | None = None,
              agree: Callable[[bool], bool] | None = None,
              on_step: Callable[[int, int], None] | None = None) -> RunResult:
    """Steps `start`..`s.steps - 1`. `on_log(row)` gets each window's averages (main process);
    `save(steps_done)` runs every ckpt_every, at the end, on a stop and on KeyboardInterrupt.
    With `agree` (DDP), stopping is decided at log steps, through it, by every rank at once.
    `on_step(steps_done, steps_planned)` runs after every step (it may raise to stop the run);
    the plan is `s.steps`, or what `s.budget_s` holds once CALIBRATE steps were timed."""
    res, rng, bar = RunResult(start), torch.Generator(), None
    total = s.steps
    t_start = t_win = time.monotonic()
    sums, win, lr = None, 0, s.lr
    with StopSignal() as stop:
        try:
            if s.progress and s.main:
                from tqdm import tqdm

                bar = tqdm(total=s.steps, initial=start, unit="step", dynamic_ncols=True,
                           desc=s.desc)
            while res.step < total:
                rng.manual_seed(step_seed(s.seed, s.rank, res.step + s.seed_offset))
                lr = s.lr_at(res.step, total)
                for g in opt.param_groups:
                    g["lr"] = lr * g.get("lr_scale", 1.0)
                losses = step_fn(res.step, rng)
                res.step += 1
                step, win = res.step, win + 1
                # (L,) summed in fp32 whatever dtype a mode's losses come in
                parts = torch.stack(list(losses.values())).detach().float()
                sums = parts if sums is None else sums + parts

                if s.budget_s and step == start + CALIBRATE:
                    total = s.fitted(step, start, time.monotonic() - t_start)
                    if bar:
                        bar.total = total
                res.steps = total
                if on_step:
                    on_step(step, total)
                last, due = step == total, step % s.log_every == 0
                over = (agree is None or due) and _over(s, t_start, stop, agree)
                if due or last or over:
                    if s.main:
                        now = time.monotonic()
                        avg = (sums / win).tolist()  # the one host sync per log window
                        res.row = {"step": step, **dict(zip(losses, avg, strict=True)), "lr": lr,
                                   "steps_per_s": win / max(now - t_win, 1e-9),
                                   "elapsed_s": now - t_start}
                        if on_log:
                            on_log(res.row)
                        if bar:
                            bar.set_postfix(_postfix(res.row, losses))
                        t_win = now
                    sums, win = None, 0
                if bar:
                    bar.update(1)
                if save and (step % s.ckpt_every == 0 or last or over):
                    save(step)
                if over:
                    res.stopped = "signal" if stop.signum is not None else "time_limit"
                    break
        except KeyboardInterrupt:
            if save:
                save(res.step)  # keep what was learned; rerun the same command to resume
            raise
        finally:
            if bar:
                bar.close()
    return res


def _over(s: RunSettings, t_start: float, stop: StopSignal,
          agree: Callable[[bool], bool] | None) -> bool:
    over = stop.signum is not None or (
        s.time_limit_min > 0 and time.monotonic() - t_start > s.time_limit_min * 60)
    return agree(over) if agree else over


def _postfix(row: dict, losses: dict) -> dict[str, str]:
    names = list(losses)
    out = {k: f"{row[k]:.4g}" if k == names[0] else f"{row[k]:.3g}" for k in names}
    return {**out, "it_s": f"{row['steps_per_s']:.1f}"}
