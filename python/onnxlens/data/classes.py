"""Class names shipped with onnxlens (ImageNet-1k, in the usual index order)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names, index i on line i."""
    text = resources.files("onnxlens.data").joinpath("resources/imagenet_classes.txt").read_text()
    return text.splitlines()


def class_names_for(n_classes: int | None) -> list[str] | None:
    """Names for an output with `n_classes` values per sample, when onnxlens knows a set that size."""
    names = imagenet_classes()
    return list(names) if n_classes == len(names) else None
