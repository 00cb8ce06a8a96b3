"""The model card: a Keras-style layer table and the same facts as plain data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..graph.layers import Shape

if TYPE_CHECKING:
    from .core import Model


def to_dict(model: Model) -> dict:
    """Name, opset, producer, inputs, outputs, layers, parameter count and preprocessing."""
    return {
        "model": model.name,
        "opset": model.opset,
        "producer": f"{model.proto.producer_name} {model.proto.producer_version}".strip(),
        "inputs": [
            {
                "name": i.name,
                "shape": list(i.shape or ()),
                "dtype": str(i.dtype),
                "layout": i.layout,
            }
            for i in model.inputs
        ],
        "outputs": model.output_names,
        "layers": [
            {
                "name": la.name,
                "op": la.op,
                "shape": list(la.shape) if la.shape else None,
                "params": la.params,
            }
            for la in model.layers
        ],
        "total_params": model.param_count,
        "preprocess": model.preprocess.to_dict(),
    }


def summary(model: Model, max_name: int = 48) -> str:
    """A table like Keras `model.summary()`: layer, op, output shape, params, with totals."""

    def fmt_shape(s: Shape) -> str:
        return "?" if s is None else "(" + ", ".join("?" if d is None else str(d) for d in s) + ")"

    def clip(s: str) -> str:
        return s if len(s) <= max_name else "…" + s[-(max_name - 1) :]

    rows = [(clip(la.name), la.op, fmt_shape(la.shape), f"{la.params:,}") for la in model.layers]
    head = ("Layer (tensor)", "Op", "Output shape", "Params")
    widths = [
        max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(4)
    ]
    line = "  ".join(
        h.ljust(w) if i < 3 else h.rjust(w)
        for i, (h, w) in enumerate(zip(head, widths, strict=True))
    )
    bar = "=" * len(line)
    out = [
        f'Model: "{model.name}"  (opset {model.opset}, {model.proto.producer_name or "unknown producer"})'
    ]
    for i in model.inputs:
        out.append(f"Input {i.name!r}: {fmt_shape(i.shape)} {i.dtype} {i.layout}")
    out += [bar, line, bar]
    for r in rows:
        out.append(
            "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    out.append(bar)
    total = model.param_count
    out.append(f"Total params: {total:,} ({total * 4 / 2**20:.2f} MB as float32)")
    out.append(f"Layers: {len(model.layers)}  Outputs: {', '.join(model.output_names)}")
    return "\n".join(out)
