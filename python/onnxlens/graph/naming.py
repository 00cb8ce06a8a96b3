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


# -- framework layer names ----------------------------------------------------------------------
# Exporters keep the framework's layer names in node-name scopes: tf2onnx writes
# "model/conv2d_4/Relu" (Keras 2) and Keras 3's TensorFlow export "functional_1/conv2d_4_1/Relu",
# where every layer's name scope carries one more "_<n>" than the layer name (the first conv2d is
# scope "conv2d_1", the layer conv2d_1 scope "conv2d_1_2"); torch.onnx writes module paths
# "/layer4/layer4.1/conv2/Conv". Keras 3 exported through the torch backend keeps no layer names.
_SUFFIX = re.compile(r"^(.*\D.*?)_\d+$")


def _scopes(node_name: str) -> list[str]:
    """The scope components of a node name: its path without the op part."""
    parts = [p for p in node_name.split("/") if p]
    return parts[:-1]


def _keras3_suffixed(scopes: list[list[str]]) -> bool:
    """True when every layer scope ends in "_<n>" (Keras 3's TensorFlow export), so the layer
    name is the scope without that suffix."""
    layer_scopes = [s[1] for s in scopes if len(s) >= 2]
    roots = {s[0] for s in scopes if s}
    return (
        bool(layer_scopes)
        and len(roots) == 1
        and all(_SUFFIX.match(c) for c in [*roots, *layer_scopes])
    )


def framework_layers(model: onnx.ModelProto) -> dict[str, tuple[str, ...]]:
    """Framework layer path of each node output, from the node names' scopes: ("conv2d_4",) for
    tf2onnx's "model/conv2d_4/Relu" and Keras 3's "functional_1/conv2d_4_1/Relu"; ("layer4",
    "layer4.1", "conv2") for torch's "/layer4/layer4.1/conv2/Conv". The model's own root scope
    (shared by every scoped node) is dropped. Nodes without scopes are absent."""
    nodes = list(model.graph.node)
    scopes = [_scopes(n.name) for n in nodes]
    scoped = [s for s in scopes if s]
    if not scoped:
        return {}
    roots = {s[0] for s in scoped}
    drop_root = len(roots) == 1 and any(len(s) >= 2 for s in scoped)
    keras3 = _keras3_suffixed(scoped)
    out: dict[str, tuple[str, ...]] = {}
    for node, s in zip(nodes, scopes, strict=True):
        if not s:
            continue
        path = s[1:] if drop_root else s
        if keras3:
            # Layer scopes are the suffixed components; TF op scopes inside a layer
            # ("batchnorm", "convolution") are not layers.
            kept = []
            for c in path:
                m = _SUFFIX.match(c)
                if not m:
                    break
                kept.append(m.group(1))
            path = kept
        if not path:
            continue
        for o in node.output:
            if o:
                out[o] = tuple(path)
    return out


def layer_names(paths: dict[str, tuple[str, ...]]) -> list[str]:
    """Every framework layer name (each path component and full path), in graph order."""
    names: dict[str, None] = {}
    for path in paths.values():
        for i in range(len(path)):
            names[path[i]] = None
        names["/".join(path)] = None
    return list(names)
