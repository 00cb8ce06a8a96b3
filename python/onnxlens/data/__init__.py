"""Images in, tensors out: loading (OpenCV) and the preprocessing spec."""

from __future__ import annotations

from .images import IMAGE_EXTENSIONS, is_image_file, load_image, to_rgb8
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec, sidecar_path

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "PreprocessSpec",
    "is_image_file",
    "load_image",
    "sidecar_path",
    "to_rgb8",
]
