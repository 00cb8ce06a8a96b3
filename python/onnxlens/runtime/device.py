"""Device selection. "auto" uses CUDA only when it really loads, and says so in one line otherwise."""

from __future__ import annotations

import functools
import logging

import onnxruntime as ort
from onnx import TensorProto, helper

from ..errors import ConfigurationError

log = logging.getLogger("onnxlens")

DEVICES = ("auto", "cpu", "cuda")
# ONNX Runtime's default logger severity (0 verbose .. 4 fatal); 2 = warning.
_ORT_DEFAULT_SEVERITY = 3


def _quiet_ort() -> None:
    # ORT prints provider load failures and graph-optimiser chatter at warning level; our own
    # messages say what matters, so keep its logger at error level.
    ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)


@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """Whether the CUDA provider really loads here, and why not when it does not.

    Listing in `get_available_providers()` only means the wheel was built with it; the shared
    libraries (CUDA, cuDNN) and a GPU are only checked when a session is created, so we create one.
    """
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False, "this onnxruntime build has no CUDA provider"
    probe = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "cuda_probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        ),
        opset_imports=[helper.make_opsetid("", 13)],
        ir_version=8,
    )
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    ort.set_default_logger_severity(4)  # silence the pages of provider-load errors
    try:
        sess = ort.InferenceSession(
            probe.SerializeToString(),
            opts,
            providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
        )
        ok = "CUDAExecutionProvider" in sess.get_providers()
    except Exception as exc:  # any failure means "not usable", the reason is reported
        return False, f"CUDA provider failed to start ({str(exc).splitlines()[0][:160]})"
    finally:
        _quiet_ort()
    return (True, "") if ok else (False, "CUDA libraries or GPU not found")


@functools.cache
def _announce_cpu_fallback(reason: str) -> None:
    log.info("onnxlens: running on CPU (%s).", reason)


def resolve_providers(device: str) -> list[str]:
    """ONNX Runtime providers for `device` in "auto" | "cpu" | "cuda"."""
    _quiet_ort()
    if device not in DEVICES:
        raise ConfigurationError(f"device must be one of {', '.join(DEVICES)}; got {device!r}.")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    ok, reason = cuda_status()
    if ok:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ConfigurationError(
            f"device='cuda' was asked for but {reason}. Install onnxruntime-gpu with matching CUDA and "
            "cuDNN libraries, or use device='cpu' (or 'auto' to fall back silently)."
        )
    _announce_cpu_fallback(reason)
    return ["CPUExecutionProvider"]
