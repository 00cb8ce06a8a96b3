"""The preprocessing spec: how images become the model's input tensor.

Defaults are the ImageNet convention most exported classifiers use (RGB, x/255, mean/std
normalised). They are always announced, because a wrong assumption here silently ruins every
explanation. Override them in code, with CLI flags, or in a sidecar `<model>.preprocess.json`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigurationError
from .images import ImageLike, load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("stretch", "crop", "pad")
SIDECAR_SUFFIX = ".preprocess.json"
# Which announced assumption an explicit setting settles.
_ASSUMPTION_OF = {
    "channel_order": "channel order",
    "mean": "mean/std",
    "std": "mean/std",
    "size": "size",
}


@dataclass(frozen=True)
class PreprocessSpec:
    """How to turn uint8 RGB images into the model input.

    `size` is (H, W); `scale` multiplies the uint8 values; then `(x - mean) / std` per channel.
    `resize`: "stretch" to size, "crop" (shorter side to size, centre crop) or "pad" (letterbox).
    """

    size: tuple[int, int] = (224, 224)
    layout: str = "NCHW"
    channel_order: str = "RGB"
    channels: int = 3
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: str = "stretch"
    source: str = "defaults"
    assumed: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigurationError(f"layout must be NCHW or NHWC, got {self.layout!r}.")
        if self.channel_order not in ("RGB", "BGR"):
            raise ConfigurationError(
                f"channel order must be RGB or BGR, got {self.channel_order!r}."
            )
        if self.resize not in RESIZE_MODES:
            raise ConfigurationError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}.")
        if self.channels not in (1, 3):
            raise ConfigurationError(
                f"image models take 1 or 3 channels; this one takes {self.channels}."
            )
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigurationError(f"size must be (H, W) with positive ints, got {self.size!r}.")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if len(v) not in (1, self.channels):
                raise ConfigurationError(
                    f"{name} has {len(v)} values but the model takes {self.channels} channels."
                )
        if any(s == 0 for s in self.std):
            raise ConfigurationError("std must not contain 0.")

    # -- construction -------------------------------------------------------------------------
    def with_overrides(self, **overrides: object) -> PreprocessSpec:
        clean = {k: v for k, v in overrides.items() if v is not None}
        if not clean:
            return self
        for key in ("mean", "std", "size"):
            if key in clean:
                clean[key] = tuple(clean[key])  # type: ignore[arg-type]
        covered = {_ASSUMPTION_OF.get(k, k) for k in clean}
        assumed = tuple(a for a in self.assumed if a not in covered)
        return replace(self, assumed=assumed, **clean)  # type: ignore[arg-type]

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, base: PreprocessSpec | None = None
    ) -> PreprocessSpec:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read preprocessing file {str(path)!r}: {exc}"
            ) from exc
        known = {f for f in cls.__dataclass_fields__ if f not in ("source", "assumed")}
        unknown = set(data) - known
        if unknown:
            raise ConfigurationError(
                f"unknown keys {sorted(unknown)} in {str(path)!r}; allowed: {sorted(known)}."
            )
        spec = (base or cls()).with_overrides(**data)
        return replace(spec, source=str(path))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("assumed")
        d.pop("source")
        return d

    def describe(self) -> str:
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        text = (
            f"{self.channel_order}, x*{self.scale:g}, mean [{mean}], std [{std}], "
            f"{self.resize} to {self.size[0]}x{self.size[1]}, {self.layout}"
        )
        if self.assumed:
            text += f" (assumed: {', '.join(self.assumed)}; override with flags or a {SIDECAR_SUFFIX} file)"
        return text

    # -- application --------------------------------------------------------------------------
    def fit(self, rgb: np.ndarray) -> np.ndarray:
        """The uint8 RGB image resized/cropped to `size`: what the model sees, used for overlays."""
        h, w = self.size
        ih, iw = rgb.shape[:2]
        if (ih, iw) == (h, w):
            return rgb
        interp = cv2.INTER_AREA if ih * iw > h * w else cv2.INTER_LINEAR
        if self.resize == "stretch":
            return cv2.resize(rgb, (w, h), interpolation=interp)
        if self.resize == "crop":
            s = max(h / ih, w / iw)
            nh, nw = max(h, round(ih * s)), max(w, round(iw * s))
            r = cv2.resize(rgb, (nw, nh), interpolation=interp)
            y0, x0 = (nh - h) // 2, (nw - w) // 2
            return np.ascontiguousarray(r[y0 : y0 + h, x0 : x0 + w])
        s = min(h / ih, w / iw)
        nh, nw = min(h, max(1, round(ih * s))), min(w, max(1, round(iw * s)))
        r = cv2.resize(rgb, (nw, nh), interpolation=interp)
        out = np.zeros((h, w, 3), np.uint8)
        y0, x0 = (h - nh) // 2, (w - nw) // 2
        out[y0 : y0 + nh, x0 : x0 + nw] = r
        return out

    def to_tensor(self, fitted: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """uint8 RGB images already at `size` -> float32 batch in the model's layout."""
        x = np.asarray(fitted, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        if self.channels == 1:
            x = x @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
        x = x * np.float32(self.scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def __call__(self, images: Sequence[ImageLike] | ImageLike) -> tuple[np.ndarray, np.ndarray]:
        """(input tensor, fitted uint8 RGB images (N, H, W, 3)) for paths or arrays."""
        items: Sequence[ImageLike] = (
            [images] if isinstance(images, str | os.PathLike | np.ndarray) else images
        )
        fitted = np.stack([self.fit(load_image(im)) for im in items])
        return self.to_tensor(fitted), fitted


def resolve_spec(
    preprocess: PreprocessSpec | Mapping | str | os.PathLike | None,
    size: tuple[int, int] | None,
    layout: str,
    channels: int | None,
    model_path: Path | None = None,
) -> PreprocessSpec:
    """The spec for a model input of `size` (H, W; None when dynamic), `layout` and `channels`.

    Precedence: an explicit PreprocessSpec; a dict of overrides on the defaults; a JSON file; the
    model's sidecar `<model>.preprocess.json`; the defaults, with what was assumed recorded so it
    can be announced.
    """
    assumed = ["channel order", "scale", "mean/std"]
    if size is None:
        size = (224, 224)
        assumed.append("size")
    base = PreprocessSpec(
        size=size,
        layout=layout if layout in ("NCHW", "NHWC") else "NCHW",
        channels=channels if channels in (1, 3) else 3,
        mean=(0.5,) if channels == 1 else PreprocessSpec.mean,
        std=(0.5,) if channels == 1 else PreprocessSpec.std,
        assumed=tuple(assumed),
    )
    if isinstance(preprocess, PreprocessSpec):
        return preprocess
    if isinstance(preprocess, Mapping):
        return base.with_overrides(**preprocess)
    if preprocess is not None:
        return PreprocessSpec.from_file(preprocess, base)
    if model_path is not None and sidecar_path(model_path).exists():
        return PreprocessSpec.from_file(sidecar_path(model_path), base)
    return base


def sidecar_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)
