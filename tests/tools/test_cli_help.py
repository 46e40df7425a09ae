"""Every command's `--help` works before torch is installed (the runtime install has no train
extra), and is the same help as with torch; running a torch command there says which extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stylebox.cli import COMMANDS, main
from tests.conftest import ROOT, env_without

NOTE = "needs the `train` extra (torch is missing): pip install -e '.[train]'"
TORCH_COMMANDS = {"train", "export", "eval", "add-style", "remove-style", "rename-style",
                  "prune", "train-bench"}


def _stylebox(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylebox", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def no_torch(tmp_path, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps at the terminal's width: one width
    return env_without(tmp_path, "torch")


def _real_help(cmd: str, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([cmd, "--help"])
    assert done.value.code in (0, None)
    return capsys.readouterr().out


def test_every_command_prints_its_help_without_torch(no_torch, capsys):
    noted = set()
    for cmd in COMMANDS:
        r = _stylebox(cmd, "--help", env=no_torch)
        assert r.returncode == 0 and not r.stderr, (cmd, r.stderr[-2000:])
        real = _real_help(cmd, capsys)  # this process has torch
        assert real.startswith("usage: stylebox " + cmd) and "--help" in real
        if r.stdout != real:  # a torch command: its help, then what it needs to run
            assert r.stdout == f"{real}\nstylebox {cmd} {NOTE}\n", cmd
            noted.add(cmd)
    assert noted >= TORCH_COMMANDS


@pytest.mark.parametrize("args", [["-h"], ["--out", "runs/x", "--help"]])
def test_help_anywhere_among_the_options(no_torch, args):
    r = _stylebox("train", *args, env=no_torch)
    assert r.returncode == 0 and "--init-from" in r.stdout and NOTE in r.stdout


@pytest.mark.parametrize("cmd", sorted(TORCH_COMMANDS))
def test_a_run_without_torch_says_which_extra(no_torch, cmd):
    r = _stylebox(cmd, "x", env=no_torch)
    assert r.returncode == 2 and r.stderr == f"stylebox {cmd}: {NOTE}\n"
    assert not r.stdout


def test_help_after_double_dash_is_an_argument_not_a_help_request(no_torch):
    r = _stylebox("remove-style", "--", "--help", env=no_torch)
    assert r.returncode == 2 and r.stderr == f"stylebox remove-style: {NOTE}\n"


def test_help_leaves_no_placeholder_behind(no_torch):
    """In-process (a program calling stylebox.cli.main): the placeholders and the modules
    imported against them are gone afterwards, so a later import is the real one."""
    code = ("import sys\n"
            "from stylebox.cli import main\n"
            "assert main(['export', '--help']) == 0\n"
            "print('export' in sys.modules.get('stylebox.model', sys).__dict__)\n"
            "try:\n"
            "    import torch\n"
            "except ModuleNotFoundError as e:\n"
            "    print('missing', e.name)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=no_torch)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == ["False", "missing torch"]
