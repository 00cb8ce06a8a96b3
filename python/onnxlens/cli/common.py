"""What every command shares: the model and preprocessing arguments, loading the model, checking
`--out`, and turning user errors (onnxlens' own, OS, OpenCV, ONNX Runtime input errors) into one
line and exit code 2."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, OnnxLensError
from ..runtime.device import DEVICES

if TYPE_CHECKING:
    from ..model import Model


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="path to the .onnx file")
    p.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="default: auto (CUDA only if it loads)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime intra-op threads (default: all cores)",
    )


def add_preprocess_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "preprocessing (defaults: ImageNet RGB, x/255, mean/std; printed at run time)"
    )
    g.add_argument(
        "--preprocess",
        metavar="JSON",
        help="a preprocessing file (default: MODEL's <stem>.preprocess.json if present)",
    )
    g.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input size when the model's is dynamic",
    )
    g.add_argument(
        "--mean",
        type=float,
        nargs="+",
        help="per-channel mean after scaling, e.g. 0.485 0.456 0.406",
    )
    g.add_argument("--std", type=float, nargs="+", help="per-channel std after scaling")
    g.add_argument(
        "--scale", type=float, help="multiplier of the uint8 pixel values (default 1/255)"
    )
    g.add_argument("--bgr", action="store_true", help="the model takes BGR channel order")
    g.add_argument(
        "--resize",
        choices=["stretch", "crop", "pad"],
        help="how images are fitted to the input size",
    )


def load_model(args: argparse.Namespace) -> Model:
    """The Model the arguments name, with the preprocessing flags applied (and announced)."""
    from ..model import Model

    model = Model(
        args.model,
        device=args.device,
        threads=args.threads,
        preprocess=getattr(args, "preprocess", None),
    )
    if hasattr(args, "mean"):
        model.preprocess = model.preprocess.with_overrides(
            size=args.size,
            mean=args.mean,
            std=args.std,
            scale=args.scale,
            channel_order="BGR" if args.bgr else None,
            resize=args.resize,
        )
        print(f"preprocessing: {model.preprocess.describe()}", file=sys.stderr)
    return model


def add_synthesis_args(p: argparse.ArgumentParser) -> None:
    """--seed, --out and --quiet, shared by the commands that synthesise images."""
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_gram_optimizer_args(p: argparse.ArgumentParser) -> None:
    """--steps, --optimizer and --lr of the Gram-matrix commands (texture, style)."""
    p.add_argument("--steps", type=int, default=200, help="loss evaluations (default 200)")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    p.add_argument("--lr", type=float, default=0.02, help="Adam learning rate")


def check_output_dir(out: str | os.PathLike[str]) -> Path:
    """`--out` as a Path, checked before any work: a folder that exists and is writable, or one
    that can be created (its nearest existing parent is a writable folder). Nothing is created;
    ConfigurationError says what is wrong and what to do."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigurationError(
            f"--out {str(path)!r} is a file; name a folder (it is created if it does not exist)."
        )
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigurationError(
            f"--out {str(path)!r} cannot be created: {str(probe)!r} is a file, not a folder; "
            "name a folder elsewhere."
        )
    try:
        # A real write, not os.access: root passes access() on read-only mounts and folders.
        with tempfile.TemporaryFile(dir=probe, prefix=".onnxlens-write-test-"):
            pass
    except OSError as exc:
        what = "is not writable" if probe == path else f"cannot be created in {str(probe)!r}"
        raise ConfigurationError(
            f"--out {str(path)!r} {what} ({exc.strerror or exc}); name a folder you can write to."
        ) from None
    return path


# API keywords that library messages name, as the CLI spells them.
_FLAGS = {"input_shape": "--size H W"}
_API_ARG = re.compile(r"\bpass (\w+)=(\(N, C, H, W\))?|\((\w+)=\.\.\.\)")


def cli_spelling(message: str, args: argparse.Namespace) -> str:
    """`message` with the Python API's keyword spellings (``pass layer=``, ``(wrt=...)``) turned
    into this command's flags (``pass --layer``), where the command has such a flag."""

    def flag(name: str) -> str | None:
        if name in _FLAGS and (name != "input_shape" or hasattr(args, "size")):
            return _FLAGS[name]
        for attr in (name, name + "s"):
            if hasattr(args, attr) and attr not in ("func", "command"):
                return "--" + attr.replace("_", "-")
        return None

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        f = flag(name)
        if f is None:
            return m.group(0)
        return f"pass {f}" if m.group(1) else f"({f} ...)"

    return _API_ARG.sub(sub, message)


def _ort_errors() -> tuple[type[BaseException], ...]:
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as C
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        return ()
    names = ("InvalidArgument", "Fail", "RuntimeException", "InvalidGraph", "NotImplemented")
    return tuple(getattr(C, n) for n in names if hasattr(C, n))


# ONNX Runtime messages about the input's shape or type (InvalidArgument on the feed itself, Fail
# from a node the input's size does not fit); any other ORT failure is a bug and keeps its
# traceback.
_INPUT_ERROR = re.compile(
    r"INVALID_ARGUMENT|invalid dimensions|Invalid rank|dimension mismatch|Incompatible dimensions"
    r"|shape|input data type|Got: \d+ Expected",
    re.IGNORECASE,
)


def _user_error(exc: BaseException, args: argparse.Namespace) -> str | None:
    """The one-line message for an error a user's input or machine caused, or None for a bug
    (which keeps its traceback)."""
    import cv2

    if isinstance(exc, OnnxLensError):
        return cli_spelling(str(exc), args)
    if isinstance(exc, MemoryError):
        return (
            "out of memory; use smaller images or fewer at a time (--batch-size where the "
            "command has it), or a machine with more memory."
        )
    if isinstance(exc, OSError):
        where = f" {exc.filename!r}" if exc.filename else ""
        why = exc.strerror or str(exc)
        return (
            f"cannot access{where}: {why}. Check the path, its permissions and the free disk "
            "space (--out names the output folder)."
        )
    if isinstance(exc, cv2.error):
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return (
            f"OpenCV failed on an image ({msg}). Check that the images are readable image "
            "files and that --size, --resize and --colormap are valid."
        )
    if isinstance(exc, _ort_errors()) and _INPUT_ERROR.search(str(exc)):
        msg = " ".join(str(exc).split())
        return (
            f"the model rejected its input (ONNX Runtime: {msg}). Check the input size and "
            "preprocessing (--size H W, --resize, --preprocess JSON, --bgr) against the input "
            "`onnxlens inspect MODEL` shows; a model with a fixed-size head needs its own input "
            "size."
        )
    return None


class _CliSpelling(logging.Filter):
    """Log records of the library spelled with the command's flags (see `cli_spelling`)."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        new = cli_spelling(msg, self.args)
        if new != msg:
            record.msg, record.args = new, None
        return True


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command. A user error (onnxlens' own errors, OS errors, OpenCV errors, ONNX
    Runtime rejecting an input) becomes one line on stderr and exit code 2, no traceback; an
    `--out` that is a file or not writable fails before any work. Messages and log lines name
    the command's flags, not the Python API's keywords."""
    spelling = _CliSpelling(args)
    logger = logging.getLogger("onnxlens")
    logger.addFilter(spelling)
    try:
        if getattr(args, "out", None) is not None:
            check_output_dir(args.out)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("onnxlens: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        msg = _user_error(exc, args)
        if msg is None:
            raise
        print(f"onnxlens: error: {msg}", file=sys.stderr)
        return 2
    finally:
        logger.removeFilter(spelling)
