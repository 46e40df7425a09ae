"""`stylebox paint-demo`: a new style from a painting, end to end, as a user does it on the
page: a real `stylebox serve` and `stylebox worker`, headless Chromium on the page's "Add your
painting" tab. Prints the timeline (upload, training starts, done, served by the server) and
saves screenshots of the tab while it trains and once the style is ready.

    stylebox paint-demo --painting ../shared/data/styles/woman_with_hat.jpg \\
        --name woman_with_hat --remove woman_with_hat --data-root ../shared/data --out runs/paint

--remove STYLE starts from the model without that style (a painting the served model
cannot know), so the new row can be scored against the one it replaces (`stylebox eval`).
Needs the train extra, Playwright and Chromium (the page tests' browser).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from stylebox.errors import doc_parser
from stylebox.procs import ROOT, free_port, stop, wait_ready

KEY = "paint-demo-key"
CHROMIUM = os.environ.get("STYLEBOX_CHROMIUM", "/usr/bin/chromium")  # as the page tests'
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def starting_model(model: Path, folder: Path, remove: str | None) -> Path:
    """A copy of `model` (and its checkpoint) in `folder`, less `remove` if given."""
    from stylebox.model import lineage
    from stylebox.model.checkpoint import load_checkpoint, save_checkpoint
    from stylebox.model.edit import edited_config, remove_style
    from stylebox.model.export import export_onnx, sample_from

    out = folder / "model" / model.name
    if not remove:
        lineage.seed_model(out, model)
        return out
    gen, card, state = load_checkpoint(lineage.checkpoint_of(model))
    gen, card = remove_style(gen, card, remove)
    ckpt = out.parent / "checkpoints" / f"{model.stem}-without-{remove}.pt"
    save_checkpoint(ckpt, gen, card, config=edited_config(state.get("config"), "remove", remove))
    export_onnx(gen, card, out, export_size=int(lineage.read_model_card(model).export.get(
        "export_size", 256)), sample=sample_from(model), checkpoint=lineage.entry(ckpt, out))
    return out


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox paint-demo", __doc__)
    p.add_argument("--painting", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--model", default="models/stylebox-a0.25.onnx")
    p.add_argument("--remove", help="start from the model without this style")
    p.add_argument("--data-root", default=os.environ.get("STYLEBOX_DATA", ""))
    p.add_argument("--out", default="runs/paint-demo")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = starting_model(Path(args.model), out, args.remove)
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STYLEBOX_")},
           "STYLEBOX_MODEL_PATH": str(model), "STYLEBOX_VIDEO_DIR": str(out / "jobs"),
           "STYLEBOX_API_KEY": KEY, "STYLEBOX_PORT": str(port),
           "STYLEBOX_DATA": str(Path(args.data_root).resolve())}
    procs = []
    for cmd in ("serve", "worker"):
        with open(out / f"{cmd}.log", "w") as log:  # the child keeps its own handle
            procs.append(subprocess.Popen([sys.executable, "-m", "stylebox", cmd], cwd=ROOT,
                                          env=env, stdout=log, stderr=subprocess.STDOUT))
    base, marks = f"http://127.0.0.1:{port}", {}
    try:
        wait_ready(f"{base}/readyz", procs)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/")
            page.get_by_label("API key").fill(KEY)
            page.get_by_role("button", name="Use key").click()
            page.get_by_label("Add your painting").check()
            page.wait_for_function("document.getElementById('add-notice').hidden",
                                   timeout=60_000)  # a worker is alive
            page.set_input_files("#painting-file", args.painting)
            page.get_by_label("Name").fill(args.name)
            if args.title:
                page.get_by_label("Title").fill(args.title)
            t0 = time.monotonic()
            page.get_by_role("button", name="Add the style").click()
            shot = False
            while True:
                jobs = httpx.get(f"{base}/jobs", headers={"X-API-Key": KEY}).json()
                text = page.inner_text("#add-status") if page.is_visible("#add-status") else ""
                now = round(time.monotonic() - t0, 1)
                if jobs["running"]:
                    marks.setdefault("running", now)
                bar = page.eval_on_selector("#add-bar", "e => e.value") \
                    if page.is_visible("#add-progress") else None
                if bar and not shot and bar >= 0.5:
                    page.screenshot(path=str(out / "screenshot-training.png"))
                    marks["half"], shot = now, True
                if "ready" in text:
                    marks["ready"] = now
                    break
                if "fail" in text.lower() or now > 1800:
                    raise SystemExit(f"stylebox paint-demo: {text}")
                time.sleep(0.5)
            page.screenshot(path=str(out / "screenshot-ready.png"))
            browser.close()
        styles = httpx.get(f"{base}/styles", headers={"X-API-Key": KEY}).json()["styles"]
        marks["styles"] = [s["name"] for s in styles]
    finally:
        for proc in procs:
            stop(proc, timeout_s=30.0)
    (out / "timeline.json").write_text(json.dumps(marks, indent=1))
    print(json.dumps(marks))
    print(f"model: {model}; screenshots and logs: {out}")
    return 0
