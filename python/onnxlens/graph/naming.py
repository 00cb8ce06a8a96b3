"""One generator of fresh tensor/node names per rewrite, so edits never collide with the model."""

from __future__ import annotations

import itertools
import re

import onnx


def all_names(model: onnx.ModelProto) -> set[str]:
    g = model.graph
    names: set[str] = {t.name for t in g.initializer} | {t.name for t in g.sparse_initializer}
    names |= {v.name for v in g.input} | {v.name for v in g.output} | {v.name for v in g.value_info}
    for node in g.node:
        names.update(node.input)
        names.update(node.output)
        names.add(node.name)
    names.discard("")
    return names


class NameGenerator:
    """Fresh names `<prefix>/<hint>_<n>` that are not used anywhere in the model."""

    def __init__(self, model: onnx.ModelProto, prefix: str = "onnxlens") -> None:
        self.taken = all_names(model)
        self.prefix = prefix
        self._counter = itertools.count()

    def __call__(self, hint: str = "t") -> str:
        hint = re.sub(r"[^A-Za-z0-9_.:/-]", "_", hint)[-60:]
        while True:
            name = f"{self.prefix}/{hint}_{next(self._counter)}"
            if name not in self.taken:
                self.taken.add(name)
                return name
