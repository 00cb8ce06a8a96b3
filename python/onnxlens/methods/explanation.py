"""Explanation: what every attribution method returns, and the heat-map normalisation it uses.

Heat maps are float32 (N, H, W) at the model's input resolution, each map in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigurationError
from ..model.targets import target_score
from ..render import apply_colormap
from ..render import overlay as _overlay


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Each (h, w) map min-max scaled to [0, 1] on its own; constant or non-finite maps -> zeros."""
    m = np.asarray(maps, dtype=np.float32)
    flat = np.where(np.isfinite(m), m, np.nan).reshape(m.shape[0], -1)
    with np.errstate(all="ignore"):
        lo = np.nanmin(np.where(np.isnan(flat).all(1, keepdims=True), 0, flat), axis=1)
        hi = np.nanmax(np.where(np.isnan(flat).all(1, keepdims=True), 0, flat), axis=1)
    span = hi - lo
    ok = span > 1e-12 * np.maximum(1.0, np.abs(hi))
    out = np.zeros_like(flat)
    out[ok] = (flat[ok] - lo[ok, None]) / span[ok, None]
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(out, 0, 1).reshape(m.shape).astype(np.float32)


@dataclass
class Explanation:
    """The result of `Method.attribute`.

    heatmap: float32 (N, H, W) at the model's input resolution, each map in [0, 1].
    raw: the method's own output -- (N, h, w) at layer resolution for CAMs (a dict per layer when
        several layers are averaged), input-shaped (N, C, H, W) for gradient methods, (N, H, W)
        for occlusion.
    target: int64 (N,) class indices, or the float cotangent array used (dense outputs).
    scores: the model output that was explained, (N, ...), as computed on the inputs.
    output: the name of that output tensor (`attribute(..., output=)`, else the constructor's,
        else the model's first output).
    layers: the layer tensors a CAM explained (the constructor's `layer=`, resolved to tensor
        names; the default layer when none was given); empty for methods without a layer.
    images: fitted uint8 RGB (N, H, W, 3) when the inputs were images, else None.
    extras: method-specific values (e.g. integrated gradients' convergence delta).
    """

    method: str
    heatmap: np.ndarray
    raw: Any
    target: np.ndarray
    scores: np.ndarray
    output: str
    layers: list[str] = field(default_factory=list)
    images: np.ndarray | None = None
    inputs: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.heatmap.shape[0])

    @property
    def target_scores(self) -> np.ndarray:
        """The explained score per sample: the target logit, or <cotangent, output>."""
        return target_score(self.scores, self.target)

    def overlay(
        self, images: np.ndarray | None = None, colormap: str = "jet", alpha: float = 0.5
    ) -> np.ndarray:
        """uint8 (N, H, W, 3): the heat maps blended over `images` (default: the fitted inputs)."""
        imgs = self.images if images is None else np.asarray(images)
        if imgs is None:
            raise ConfigurationError(
                "this explanation was computed from a preprocessed array, so there are no images to "
                "overlay; pass them: explanation.overlay(images) with uint8 RGB (N, H, W, 3)."
            )
        return _overlay(imgs, self.heatmap, colormap=colormap, alpha=alpha)

    def picture(self, max_images: int = 8) -> np.ndarray:
        """One uint8 RGB strip of the (first `max_images`) overlays or colour-mapped heat maps."""
        k = min(len(self), max_images)
        tiles = self.overlay()[:k] if self.images is not None else apply_colormap(self.heatmap[:k])
        pad = np.full((tiles.shape[1], 4, 3), 255, np.uint8)
        parts: list[np.ndarray] = []
        for t in tiles:
            parts += [t, pad]
        return np.concatenate(parts[:-1], axis=1)

    def _repr_png_(self) -> bytes:
        import cv2

        ok, buf = cv2.imencode(".png", np.ascontiguousarray(self.picture()[:, :, ::-1]))
        return bytes(buf) if ok else b""

    def _repr_html_(self) -> str:
        import base64
        import html

        png = base64.b64encode(self._repr_png_()).decode()
        tgt = (
            self.target.tolist()
            if self.target.ndim == 1
            else f"cotangent {tuple(self.target.shape)}"
        )
        layers = f" on {', '.join(self.layers)}" if self.layers else ""
        return (
            f"<div><b>{html.escape(self.method)}</b>{html.escape(layers)} · target {html.escape(str(tgt))}<br>"
            f'<img src="data:image/png;base64,{png}"></div>'
        )

    def __repr__(self) -> str:
        return f"Explanation({self.method}, heatmap={tuple(self.heatmap.shape)}, target={self.target.tolist() if self.target.ndim == 1 else 'cotangent'})"


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along `axis`."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
