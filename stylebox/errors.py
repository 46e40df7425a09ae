"""The one error type for what a user can fix, and how every command reports it.

Each layer raises `UserError` subclasses for its own bad inputs (a malformed card, a missing
photo folder, a setting this host cannot run, an upload that is not an image); the
`stylebox` entry point (stylebox/cli.py) prints any of them once, as `stylebox COMMAND:
message` on stderr, and exits with the error's `exit_code`; the service turns the HTTP ones
(service/http/errors.py) into problem+json. Imports nothing from stylebox, so every layer can
use it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UserError(Exception):
    """Something the user can fix; str() is one line that says what, and where it can, how.

    exit_code: 2 for a bad argument, file or setting (argparse's own code for usage errors),
    1 for a model or runtime that fails to load or to verify (the command's work failed).
    """

    exit_code: int = 2


def report(prog: str, message: object) -> None:
    """Print `prog: message` on stderr: the one shape of every command's error line."""
    print(f"{prog}: {message}", file=sys.stderr)


def need_file(path: str | Path, what: str) -> Path:
    """`path`, which must be a file: a missing input named on the command line is a usage
    error (exit 2), found before any model or runtime is loaded."""
    if not Path(path).is_file():
        raise UserError(f"{what} {str(path)!r} does not exist")
    return Path(path)


def doc_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A command's parser from its module docstring: first line = description, the usage
    examples after the blank line = epilog, printed as written."""
    return argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=doc.split("\n", 2)[2])
