"""The `onnxlens` command: a thin argparse layer over the public Python API.

One module per command, each with `add_parser(subparsers)` (which sets `func=run`) and
`run(args) -> exit code`; COMMANDS is the one registry, in the order `--help` lists them.
Shared arguments and error handling live in `cli.common`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .. import __version__
from . import (
    activations,
    atlas,
    demo,
    dream,
    embed,
    explain,
    filters,
    fool,
    gradient,
    inspect,
    invert,
    mine,
    report,
    style,
    texture,
    visualize,
)
from .common import run_command

COMMANDS = (
    inspect,
    activations,
    filters,
    gradient,
    explain,
    visualize,
    dream,
    invert,
    texture,
    style,
    fool,
    mine,
    embed,
    demo,
    atlas,
    report,
)


def build_parser():  # -> argparse.ArgumentParser
    import argparse

    parser = argparse.ArgumentParser(
        prog="onnxlens", description="See inside CNNs from their exported ONNX files."
    )
    parser.add_argument("--version", action="version", version=f"onnxlens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what onnxlens does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record: tests, notebooks and
    embedding tools swap sys.stderr between main() calls, and a handler bound to the first one
    would write to a closed stream ("--- Logging error ---")."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    logger = logging.getLogger("onnxlens")
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        h = _CurrentStderr()
        h.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(h)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    return run_command(args)


__all__ = ["COMMANDS", "build_parser", "main", "run_command"]
