"""Multi-process training: `torchrun --nproc_per_node 2` with DDP over gloo on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from stylebox.procs import free_port
from tests.conftest import make_train_data, write_train_config


def test_torchrun_two_processes_train_one_model(tmp_path):
    data = make_train_data(tmp_path / "data")
    cfg = write_train_config(data, steps=3, batch_size=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "stylebox", "train", "--config", str(cfg), "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 3
    assert state["card"]["training"]["world_size"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())
