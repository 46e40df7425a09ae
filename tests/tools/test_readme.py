"""The README's recipes, run as written: a recipe that rots fails here.

Every command of the README's ```bash blocks runs, in README order, unless `SKIP` below names
it with the reason (a GPU, Docker, the network, a long training run, a package install).
`stylebox stylize`, `export`, `eval`, `add-style`, `rename-style`, `remove-style`, the API's
curl examples (against a real `stylebox serve` this test starts) and the loopback replicas
all run. Each command runs as a user runs it, from the repository root with the data in
`../shared/data` beside it; to leave the checkout untouched (recipes write `models/`,
`docs/eval/`, `runs/`), the root is a scratch copy of it: `models/` and `configs/` copied
afresh before each block, `.venv`, `tests/` and `deploy/` linked, `../shared` the real one.

What a test cannot give a command is supplied, and listed here:
- files a user brings: `photo.jpg`, `other.png` (eval photos), `kandinsky.jpg` (a
  painting no shipped style uses) and `clip.mp4` (a 2 s clip made by stylebox.videobench);
- the checkpoint a skipped `stylebox train` would write: `runs/a0.25/last.pt` is the shipped
  8-style checkpoint (`models/checkpoints/stylebox-a0.25.pt`);
- the server the curl examples talk to: `stylebox serve` on a free port (`localhost:8000`
  is rewritten to it) serving `models/stylebox-a0.25.onnx` of the scratch root (and
  `models/stylebox-a0.1.onnx` as `fast`, as *Several models* starts it), with
  `STYLEBOX_ALLOW_ADMIN_WITHOUT_KEY=true` (no key is set, so `Bearer $STYLEBOX_API_KEY` is
  empty), one server for the whole run; curl gets `--fail`, so a 4xx/5xx fails;
- speed-ups appended to commands that take minutes as written (`SPEED_UPS`): fewer and
  smaller eval photos, 2 add-style steps on a few photos, a small export trace size, fewer
  load-test requests, a 1 s live bench at one small size. They change how much work a
  command does, never which flags it has.
- one thread per process (OMP_NUM_THREADS=1): on a shared 2-core machine PyTorch's thread
  pool otherwise waits for busy cores and VGG runs 10x slower.

After the *Adding a style* block the server serves the 11-style model it reloaded, with the
same sample photo (`/sample.png`) as before: the re-export kept it.

Skipped with one line when `../shared/data` (the training data) is not beside the checkout
(and the curl blocks when curl is not installed). About 80 s on a shared 2-core machine;
`-s` prints each command as run, with its time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"

# Commands not run, each with its reason: (regex matched against the command, reason).
SKIP: list[tuple[str, str]] = [
    (r"^make (serve|test)\b", "creates a venv from the package index (network); "
                              "`make test` is the whole suite"),
    (r"^mkdir -p runs && nohup stylebox train\b", "long training (hours on a CPU)"),
    (r"^kill %1\b", "stops the skipped background training"),
    (r"^stylebox train-bench\b", "times training steps: minutes on a CPU, bf16 rows longer"),
    (r"^stylebox train\b", "long training"),
    (r"^torchrun\b", "multi-GPU training"),
    (r"^git clone\b", "network"),
    (r"^python3 -m venv .venv && .venv/bin/pip install\b", "package index (network)"),
    (r"^PYTHON=\S+ training/family\.sh\b", "trains four models: a GPU, or hours on a CPU"),
    (r"^\.venv/bin/stylebox export runs/fam/", "needs the skipped family run's checkpoint; "
                                                "the same export runs in *Train and export*"),
    (r"^docker\b", "Docker"),
    # The offline image recipe: tests/deploy/test_container.py runs these steps itself.
    (r"^python3 -m pip download\b", "the package index (network), about 110 MB of wheels"),
    (r"^debootstrap\b", "root and a Debian mirror"),
    (r"^rm -rf rootfs/", "cleans the skipped debootstrap's tree"),
    (r"^tar -C rootfs\b", "Docker (imports the skipped base)"),
    (r"^kubectl\b", "a Kubernetes cluster"),
    (r"^apt-get\b", "a system package (network, root)"),
    (r"^STYLEBOX_EXTRA_MODELS=\S+ \.venv/bin/stylebox serve\b",
     "serves until stopped; the test's own server serves the same two models"),
    # A new style from a painting: the worker trains it for minutes (TRAINER_STYLE_SECONDS);
    # tests/service/test_trainer.py runs a real worker end to end on a tiny model instead.
    (r"^STYLEBOX_DATA=\S+ stylebox worker\b", "a trainer worker (minutes per style)"),
    (r"^curl .*-F painting=", "queues a trainer job (needs the skipped worker)"),
    (r"^curl .*/jobs/\{id\}", "polls the skipped trainer job"),
    (r"^curl .*style=harbour", "uses the style the skipped trainer job adds"),
]

# (regex, arguments appended when it matches): the documented speed-ups (module docstring).
SPEED_UPS: list[tuple[str, list[str]]] = [
    (r"^stylebox eval\b", ["--max-photos", "6", "--size", "64", "--tile", "32",
                           "--set", "style_size=128"]),
    (r"^stylebox add-style\b", ["--steps", "2", "--set", "max_photos=4", "--image-size", "64",
                                "--style-size", "128", "--batch-size", "2",
                                "--preview-every", "0", "--no-progress"]),
    (r"^(\.venv/bin/)?stylebox export\b", ["--size", "64"]),
    (r"^\.venv/bin/python deploy/replicas\.py\b", ["--requests", "16"]),
    (r"^\.venv/bin/stylebox live-bench\b", ["--sizes", "64x48", "--seconds", "1",
                                            "--warmup", "0.5"]),
]


@dataclass
class Block:
    line: int  # where the block starts in README.md
    heading: str
    commands: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"L{self.line}-" + re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")


def _strip_comment(line: str) -> str:
    """The line without its shell comment: a # at the start or after a blank, unquoted."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_blocks(text: str | None = None) -> list[Block]:
    """The README's ```bash blocks: one command per logical line (\\ continuations joined,
    comments dropped), each block with the heading it sits under."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks, heading, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        if line.strip() == "```bash":
            block = Block(i + 1, heading)
            i += 1
            pending = ""
            while not lines[i].startswith("```"):
                code = _strip_comment(lines[i])
                if code.endswith("\\"):
                    pending += code[:-1].rstrip() + " "
                else:
                    command = (pending + code.strip()).strip()
                    pending = ""
                    if command:
                        block.commands.append(" ".join(command.split()))
                i += 1
            blocks.append(block)
        i += 1
    return blocks


def skip_reason(command: str) -> str | None:
    return next((why for pattern, why in SKIP if re.search(pattern, command)), None)


def as_run(command: str, port: int) -> str:
    """The command with its speed-ups and the test server's port; curl fails on 4xx/5xx."""
    for pattern, extra in SPEED_UPS:
        if re.search(pattern, command):
            command = command + " " + " ".join(extra)
    if command.startswith("curl "):
        command = "curl --fail " + command[len("curl "):]
    return command.replace("localhost:8000", f"127.0.0.1:{port}")


# -- the checks that need no data ------------------------------------------------------------

def test_every_readme_command_runs_or_is_skipped_for_a_reason():
    """A new command runs by default; every SKIP entry still matches a command (a stale
    entry would hide the next one that matches it)."""
    commands = [c for b in readme_blocks() for c in b.commands]
    assert len(commands) > 30
    used = {pattern for pattern, _ in SKIP if any(re.search(pattern, c) for c in commands)}
    assert used == {pattern for pattern, _ in SKIP}, "SKIP entries that match nothing"
    ran = [c for c in commands if skip_reason(c) is None]
    for needed in ("stylebox stylize", "stylebox export", "stylebox eval", "stylebox add-style",
                   "stylebox rename-style", "stylebox remove-style", "curl -s -F image=@",
                   "curl -X POST"):
        assert any(c.removeprefix(".venv/bin/").startswith(needed) for c in ran), needed


def test_the_parser_joins_continuations_and_drops_comments():
    text = "## H\n```bash\na \\\n  b  # note\n# only a comment\nc 'x#y' \"#\" # z\n```\n"
    (block,) = readme_blocks(text)
    assert block.heading == "H" and block.commands == ["a b", "c 'x#y' \"#\""]


# -- the recipes, run ------------------------------------------------------------------------

BLOCKS = readme_blocks()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A scratch repository root beside the real ../shared (see the module docstring)."""
    if not (DATA / "vgg").is_dir() or not (DATA / "eval-photos").is_dir():
        pytest.skip("../shared/data (the training data) is not beside the checkout")
    top = tmp_path_factory.mktemp("readme")
    (top / "shared").symlink_to(SHARED.resolve())
    repo = top / "repo"
    repo.mkdir()
    (repo / ".venv").symlink_to(Path(sys.prefix))
    for name in ("tests", "deploy"):
        (repo / name).symlink_to(ROOT / name)
    photos = DATA / "eval-photos"
    shutil.copy(photos / "kodak_kodim03.jpg", repo / "photo.jpg")
    from PIL import Image

    with Image.open(photos / "jcjohnson_chicago.jpg") as im:
        im.convert("RGB").save(repo / "other.png")
    shutil.copy(DATA / "styles" / "starry_night_crop.jpg", repo / "kandinsky.jpg")
    from stylebox.videobench import make_clip

    make_clip(repo / "clip.mp4", 160, 120, 20, 10, audio="aac")  # a phone clip, small
    (repo / "runs" / "a0.25").mkdir(parents=True)
    shutil.copy(ROOT / "models/checkpoints/stylebox-a0.25.pt", repo / "runs/a0.25/last.pt")
    return repo


def _fresh(repo: Path) -> None:
    """models/ and configs/ as the checkout has them (recipes replace the served model)."""
    for name in ("models", "configs"):
        shutil.rmtree(repo / name, ignore_errors=True)
        shutil.copytree(ROOT / name, repo / name)


def _env() -> dict[str, str]:
    from stylebox.procs import service_env

    env = service_env({"OMP_NUM_THREADS": "1", "STYLEBOX_ALLOW_ADMIN_WITHOUT_KEY": "true"})
    env["PATH"] = str(Path(sys.prefix) / "bin") + os.pathsep + env["PATH"]
    env.pop("STYLEBOX_DATA", None)  # the recipes' own default, ../shared/data
    return env


@pytest.fixture(scope="module")
def server(root):
    """`stylebox serve` from the scratch root, its default model; started on first use."""
    from stylebox.procs import free_port, stop, wait_ready

    state: dict = {}

    def start() -> int:
        if not state:
            _fresh(root)
            port = free_port()
            with open(root.parent / "serve.log", "w") as log:  # a file: a pipe would fill
                # README *Several models*: its curl examples ask for ?model=fast
                env = {**_env(),
                       "STYLEBOX_EXTRA_MODELS": "fast=models/stylebox-a0.25-fast.onnx"}
                proc = subprocess.Popen(["stylebox", "serve", "--port", str(port)], cwd=root,
                                        env=env, stdout=log, stderr=subprocess.STDOUT)
            state.update(port=port, proc=proc)
            wait_ready(f"http://127.0.0.1:{port}/readyz", [proc], 120,
                       root.parent / "serve.log")
        return state["port"]

    yield start
    if state:
        stop(state["proc"])


def _get(port: int, path: str):
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30)


def _check_eval(command: str, root: Path) -> None:
    """An eval recipe without --styles scores every style of the shipped model, the two
    added by add-style included (their paintings are found from the card)."""
    import shlex

    args = shlex.split(command)
    out = root / args[args.index("--out") + 1] if "--out" in args else None
    if out is None or "--styles" in args:
        return
    rows = (out / "eval.csv").read_text().splitlines()
    assert len(rows) == 1 + 10 and rows[-1].startswith("woman_with_hat,"), rows


@pytest.mark.parametrize("block", [b for b in BLOCKS
                                   if any(skip_reason(c) is None for c in b.commands)],
                         ids=lambda b: b.id)
def test_readme_block_runs_as_written(block, root, server):
    uses_server = any("localhost:8000" in c for c in block.commands if skip_reason(c) is None)
    if uses_server and shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    port = server() if uses_server else 0
    _fresh(root)
    before = _get(port, "/sample.png").content if uses_server else b""
    for command in block.commands:
        if skip_reason(command):
            continue
        run = as_run(command, port)
        t0 = time.monotonic()
        r = subprocess.run(["bash", "-c", run], cwd=root, env=_env(), capture_output=True,
                           text=True, timeout=300)
        print(f"{time.monotonic() - t0:5.1f} s  {run}")
        assert r.returncode == 0, (f"README line {block.line} ({block.heading}): `{command}` "
                                   f"exited {r.returncode}\n{r.stdout[-2000:]}\n"
                                   f"{r.stderr[-3000:]}")
        if command.startswith("stylebox eval"):
            _check_eval(command, root)
    if block.heading == "Adding a style":
        # The reloaded model has the new style and kept the page's sample photo.
        styles = [s["name"] for s in _get(port, "/styles").json()["styles"]]
        assert styles[-1] == "kandinsky" and len(styles) == 11
        assert _get(port, "/sample.png").content == before
