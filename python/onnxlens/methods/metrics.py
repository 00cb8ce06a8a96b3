"""Quality of explanations: deletion/insertion curves (Petsiuk et al. 2018, RISE) and the model
parameter randomisation sanity check (Adebayo et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ConfigurationError
from ..model import Inputs, Model
from ..model.targets import Target, target_score
from .base import Method, forward_batch_size, progress
from .explanation import Explanation, softmax

__all__ = ["FaithfulnessCurve", "SanityResult", "deletion", "insertion", "sanity_check"]


@dataclass
class FaithfulnessCurve:
    """Target score as pixels are deleted (or inserted) in order of the heat map.

    fractions: (steps + 1,) fraction of pixels changed; scores: (N, steps + 1); auc: (N,) area
    under each curve (trapezoid rule over the fractions). Deletion: lower is better; insertion:
    higher is better."""

    mode: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray

    @property
    def mean_auc(self) -> float:
        return float(self.auc.mean())


def _blur(x: np.ndarray, layout: str, sigma: float) -> np.ndarray:
    import cv2

    out = np.empty_like(x)
    for i in range(x.shape[0]):
        img = x[i] if layout == "NHWC" else x[i].transpose(1, 2, 0)
        b = cv2.GaussianBlur(np.ascontiguousarray(img), (0, 0), sigma)
        b = b.reshape(img.shape)
        out[i] = b if layout == "NHWC" else b.transpose(2, 0, 1)
    return out


def _curve(
    model: Model,
    explanation: Explanation,
    mode: str,
    steps: int,
    baseline: float | str,
    probabilities: bool,
    show: bool,
) -> FaithfulnessCurve:
    x = explanation.inputs
    if x is None:
        raise ConfigurationError(
            "the explanation carries no inputs; compute it with Method.attribute."
        )
    if steps < 1:
        raise ConfigurationError(f"steps must be >= 1, got {steps}.")
    nhwc = model.layout == "NHWC"
    n = x.shape[0]
    h, w = explanation.heatmap.shape[1:]
    if baseline == "blur":
        other = _blur(x, model.layout, sigma=max(h, w) / 20)
    else:
        other = np.full_like(x, float(baseline))
    start, end = (x, other) if mode == "deletion" else (other, x)
    order = np.argsort(-explanation.heatmap.reshape(n, -1), axis=1, kind="stable")
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(int)
    out_name = explanation.output
    tgt = explanation.target
    sess = model.plain_session()
    bs = forward_batch_size(model)
    scores = np.zeros((n, steps + 1), np.float32)
    for i in progress(range(n), f"{mode} curve", show):
        batch = np.repeat(start[i : i + 1], steps + 1, axis=0)
        for k, c in enumerate(counts):
            pix = order[i, :c]
            r, col = np.unravel_index(pix, (h, w))
            if nhwc:
                batch[k, r, col, :] = end[i, r, col, :]
            else:
                batch[k, :, r, col] = end[i, :, r, col]
        out = model.run_batched(sess, batch, [out_name], bs)[0]
        if probabilities and tgt.dtype.kind != "f" and out.ndim == 2:
            out = softmax(out, axis=1)
        scores[i] = target_score(out, np.repeat(tgt[i : i + 1], steps + 1, axis=0))
    fr = counts / (h * w)
    auc = np.trapezoid(scores, fr, axis=1).astype(np.float32)
    return FaithfulnessCurve(mode, fr, scores, auc)


def deletion(
    model: Model,
    explanation: Explanation,
    steps: int = 32,
    baseline: float | str = 0.0,
    probabilities: bool = True,
    progress: bool = True,
) -> FaithfulnessCurve:
    """Deletion curve: replace the most important pixels first by `baseline` (a value in the
    model's input space, or "blur"); the target's softmax probability (or raw score with
    `probabilities=False`) should fall fast. Lower AUC = more faithful."""
    return _curve(model, explanation, "deletion", steps, baseline, probabilities, progress)


def insertion(
    model: Model,
    explanation: Explanation,
    steps: int = 32,
    baseline: float | str = "blur",
    probabilities: bool = True,
    progress: bool = True,
) -> FaithfulnessCurve:
    """Insertion curve: start from `baseline` (default a blurred copy) and insert the most
    important pixels first; the target's probability should rise fast. Higher AUC = better."""
    return _curve(model, explanation, "insertion", steps, baseline, probabilities, progress)


# -- parameter randomisation -------------------------------------------------------------------


@dataclass
class SanityResult:
    """Cascading randomisation from the top: `layers[k]` is the lowest randomised node at step k
    (step 0: nothing randomised). `spearman` (steps, N): rank correlation of each heat map with
    the original one. A method that passes drops well below 1 as layers are randomised."""

    layers: list[str]
    spearman: np.ndarray
    explanations: list[Explanation]


def _rank(a: np.ndarray) -> np.ndarray:
    r = np.empty(a.shape, np.float64)
    idx = np.argsort(a, axis=1, kind="stable")
    np.put_along_axis(
        r, idx, np.arange(a.shape[1], dtype=np.float64)[None].repeat(a.shape[0], 0), axis=1
    )
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Spearman rank correlation of (N, ...) arrays (ties broken by position)."""
    ra, rb = _rank(a.reshape(a.shape[0], -1)), _rank(b.reshape(b.shape[0], -1))
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1), 0.0)


def _parametric_nodes(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    inits = {t.name for t in proto.graph.initializer}
    return [
        n
        for n in proto.graph.node
        if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
        and len(n.input) > 1
        and n.input[1] in inits
    ]


def sanity_check(
    method: Method,
    inputs: Inputs,
    target: Target | str = None,
    steps: int = 6,
    seed: int = 0,
    progress: bool = True,
    **attribute_kwargs: Any,
) -> SanityResult:
    """Model-parameter randomisation test (Adebayo et al. 2018, cascading): re-initialise the
    weights of the Conv/Gemm/MatMul nodes from the top down (Gaussian with each tensor's own
    std), explain the same inputs and targets with the same method settings, and measure the
    rank correlation with the original heat maps at `steps` points of the cascade.

    `attribute_kwargs` go to every `method.attribute` call: `output=` and the method's per-call
    knobs (`n_steps=`, `baselines=`, `internal_batch_size=`, ...)."""
    model = method.model
    original = method.attribute(inputs, target, **attribute_kwargs)
    x = original.inputs
    assert x is not None  # attribute() always records its inputs
    tgt = original.target
    # The explained output, resolved, so a randomised copy explains the same tensor.
    attribute_kwargs["output"] = original.output
    nodes = _parametric_nodes(model.proto)
    if not nodes:
        raise ConfigurationError("the model has no Conv/Gemm/MatMul weights to randomise.")
    cut = sorted(
        set(np.linspace(1, len(nodes), min(steps, len(nodes))).round().astype(int).tolist())
    )
    rng = np.random.default_rng(seed)
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    by_name = {t.name: t for t in proto.graph.initializer}
    done = 0
    layers = ["(none)"]
    rhos = [np.ones(len(original))]
    exps = [original]
    order = list(reversed(nodes))
    for k in _progress_steps(cut, progress):
        for node in order[done:k]:
            for name in node.input[1:3]:
                t = by_name.get(name)
                if t is None:
                    continue
                w = numpy_helper.to_array(t)
                if w.dtype.kind != "f":
                    continue
                std = float(w.std()) or 0.01
                t.CopyFrom(
                    numpy_helper.from_array(
                        (rng.standard_normal(w.shape) * std).astype(w.dtype), name
                    )
                )
        done = k
        rand = Model(
            proto,
            device=model.device,
            threads=model.threads,
            preprocess=model.preprocess,
            memory_limit=model.memory_limit,
        )
        exp = method.with_model(rand).attribute(x, tgt, **attribute_kwargs)
        layers.append(order[k - 1].name or order[k - 1].output[0])
        rhos.append(spearman(original.heatmap, exp.heatmap))
        exps.append(exp)
    return SanityResult(layers, np.stack(rhos).astype(np.float32), exps)


def _progress_steps(cut: list[int], show: bool):
    return progress(cut, "sanity check", show)
