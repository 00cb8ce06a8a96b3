"""Load, validate and shape-infer a model from a path, bytes or a ModelProto."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, helper

from ..errors import ModelLoadError
from .fold import fold_constants

ModelSource = str | os.PathLike | bytes | onnx.ModelProto


def _check_external_data(model: onnx.ModelProto, base_dir: Path) -> None:
    """Refuse external-data locations that leave the model's folder (path traversal)."""
    root = base_dir.resolve()
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (root / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(root):
            raise ModelLoadError(
                f"tensor {tensor.name!r} stores its data at {location!r}, outside the model's folder "
                f"{str(root)!r}; onnxlens refuses external data paths that leave the folder. Move the "
                "data file next to the model and re-save it with onnx.save(..., location='<file name>')."
            )
        if not target.exists():
            raise ModelLoadError(
                f"tensor {tensor.name!r} stores its data in {location!r}, which does not exist in "
                f"{str(root)!r}. Copy the external data file next to the .onnx file."
            )


def load_model(source: ModelSource) -> tuple[onnx.ModelProto, Path | None]:
    """The validated, shape-inferred model and the folder it came from (None for bytes/protos)."""
    base_dir: Path | None = None
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)  # never mutate the caller's proto
    elif isinstance(source, bytes | bytearray):
        model = _parse(bytes(source), "the given bytes")
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise ModelLoadError(f"model file {str(path)!r} does not exist.")
        if path.is_dir():
            raise ModelLoadError(f"{str(path)!r} is a folder; pass the .onnx file inside it.")
        data = path.read_bytes()
        if not data:
            raise ModelLoadError(
                f"model file {str(path)!r} is empty (0 bytes); re-export or re-download it."
            )
        model = _parse(data, repr(str(path)))
        base_dir = path.parent
        _check_external_data(model, base_dir)
        try:
            external_data_helper.load_external_data_for_model(model, str(base_dir))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read the external data of {str(path)!r}: {exc}") from exc
    else:
        raise ModelLoadError(
            f"cannot load a model from {type(source).__name__}; pass a path, bytes or an onnx.ModelProto."
        )
    if base_dir is None and any(
        external_data_helper.uses_external_data(t)
        for t in external_data_helper._get_all_tensors(model)
    ):
        raise ModelLoadError(
            "this model keeps its weights in external data files, which bytes or a ModelProto cannot "
            "carry; pass the path of the .onnx file instead."
        )
    _validate(model)
    return _infer_shapes(fold_constants(model)), base_dir


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{what} is not a valid ONNX model (protobuf parse failed: {exc}); the file may be truncated "
            "or not ONNX at all. Re-export it or check the download."
        ) from exc
    if not model.graph.node and not model.graph.output:
        raise ModelLoadError(
            f"{what} parsed as an empty ONNX model (no nodes, no outputs); it is probably not an .onnx file."
        )
    return model


def _validate(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise ModelLoadError(
            f"the model fails ONNX validation: {first}. Re-export it, or run onnx.checker.check_model "
            "on it for the full report."
        ) from exc
    if not model.graph.input:
        raise ModelLoadError("the model has no inputs; onnxlens needs an image input to run it.")


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=True
        )
    except Exception:  # shape inference is best-effort; a model ORT can run is still useful
        return model


def weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with weights turned into typed inputs: the checker validates the structure
    without serialising hundreds of MB of weights (6 s for ViT-B/16 otherwise)."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    g = light.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    g.value_info.extend(model.graph.value_info)
    listed = {v.name for v in model.graph.input}
    small = [t for t in model.graph.initializer if t.name not in listed and len(t.raw_data) <= 4096]
    g.initializer.extend(small)  # small constants keep their values (shape inputs, axes)
    keep = {t.name for t in small}
    for t in model.graph.initializer:
        if t.name not in listed and t.name not in keep:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return light
