"""A served model a worker can edit, and a real `stylebox worker` process: tiny, made on the
spot (a random-weight VGG, generated photos and paintings; no shared data).

    model = make_editable_model(tmp_path)         # tmp_path/model/m.onnx + its checkpoint
    copy = fresh_model(model, tmp_path)           # a copy (and checkpoint) one test edits
    with run_worker(model, jobs, data) as proc:   # `python -m stylebox worker`
        wait_job(client, "/jobs/ID", {"done"})    # poll a trainer job until it is done
        ...
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import make_train_data, write_train_config

ROOT = Path(__file__).resolve().parents[1]


def make_editable_model(root: Path) -> tuple[Path, Path]:
    """(model, data root): a 2-style tiny checkpoint under root/model/checkpoints, exported
    to root/model/m.onnx with its lineage and a sample photo, and the data it trains with."""
    import torch

    from stylebox.model import lineage
    from stylebox.model.checkpoint import build_generator, save_checkpoint
    from stylebox.model.export import export_onnx
    from stylebox.training.config import TrainConfig

    data = make_train_data(root / "data")
    cfg = TrainConfig.load(write_train_config(data, log_every=1))
    card = cfg.card()
    torch.manual_seed(0)
    gen = build_generator(card).randomize_styles()
    ckpt = root / "model" / "checkpoints" / "base.pt"
    save_checkpoint(ckpt, gen, card, config=cfg.to_dict())
    model = root / "model" / "m.onnx"
    export_onnx(gen, card, model, export_size=32, sample_photo=data / "photos" / "p3.png",
                checkpoint=lineage.entry(ckpt, model))
    return model, data


def fresh_model(model: Path, root: Path) -> Path:
    """A copy of `model` and its checkpoint under root/model/, for one test to change."""
    from stylebox.model import lineage

    copy = root / "model" / "m.onnx"
    lineage.seed_model(copy, model)
    return copy


def wait_job(c, loc: str, states: set[str], timeout_s: float = 120, seen: list | None = None,
             headers: dict[str, str] | None = None) -> dict:
    """Poll trainer job `loc` (GET /jobs/{id}) until its state is one of `states`; each
    status read is appended to `seen` when given."""
    deadline = time.monotonic() + timeout_s
    while True:
        s = c.get(loc, headers=headers).json()
        if seen is not None:
            seen.append(s)
        if s["state"] in states:
            return s
        assert time.monotonic() < deadline, s
        time.sleep(0.1)


def painting_png(path: Path, seed: int = 3, size: int = 96) -> Path:
    """A small "painting": bold diagonal bands and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    bands = ((xx + yy) // 6) % 3
    palette = np.array([[200, 30, 60], [20, 160, 220], [250, 220, 40]], np.uint8)
    img = np.clip(palette[bands].astype(int) + rng.integers(-20, 20, (size, size, 3)), 0, 255)
    Image.fromarray(img.astype(np.uint8)).save(path)
    return path


def worker_env(model: Path, jobs: Path, data: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEBOX_")}
    env.update({"STYLEBOX_MODEL_PATH": str(model), "STYLEBOX_VIDEO_DIR": str(jobs),
                "STYLEBOX_DATA": str(data), "STYLEBOX_VIDEO_HEARTBEAT_S": "0.5",
                "STYLEBOX_TRAINER_STYLE_SECONDS": "2", "OMP_NUM_THREADS": "1",
                **{f"STYLEBOX_{k.upper()}": v for k, v in settings.items()}})
    return env


@contextlib.contextmanager
def run_worker(model: Path, jobs: Path, data: Path, *args: str,
               **settings: str) -> Iterator[subprocess.Popen]:
    """`python -m stylebox worker` until the block ends (SIGTERM, then kill); waits until its
    heartbeat file is there, so a request made in the block finds it alive."""
    proc = subprocess.Popen([sys.executable, "-m", "stylebox", "worker", "--poll", "0.2", *args],
                            cwd=ROOT, env=worker_env(model, jobs, data, **settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list((jobs / "trainer" / "workers").glob("*.json")):
            if proc.poll() is not None:
                raise AssertionError(f"the worker exited: {proc.stdout.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("the worker did not start within 60 s")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
