"""A generated block inside a hand-written markdown file, between two HTML comments.

    <!-- NAME:begin -->
    ... what the tool wrote last ...
    <!-- NAME:end -->

The tools that report into docs (`stylebox bench`, `frontier`, `flicker`, `train-bench`)
rewrite only their block and keep the prose around it as written. The standard library only,
and no stylebox import: every layer may use it (training's `train-bench` does).
"""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """The begin and end comments of block `name`."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_between(path: str | Path, name: str, body: str, *, title: str | None = None) -> None:
    """Put `body` between `name`'s markers in `path`, replacing what was there.

    The rest of the file is kept byte for byte. Where the file has no such block (no begin
    marker, or no end marker after it), the block is appended after one blank line; a missing
    or blank file gets `# title` first when `title` is given. Trailing whitespace of `body`
    is dropped, so the end marker always starts its own line. Missing folders are made.
    """
    path = Path(path)
    begin, end = markers(name)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else ""
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if stop >= 0:
        text = text[:start] + block + text[stop + len(end):]
    else:
        if not text.strip():
            text = f"# {title}\n" if title else ""
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
