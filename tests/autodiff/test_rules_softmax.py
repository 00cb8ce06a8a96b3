"""Softmax / LogSoftmax in every opset: pre-13 2-D coercion at `axis` and per-axis from 13."""

from __future__ import annotations

import numpy as np
import pytest
from vjp_helpers import check_vjp, op_model


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize(("opset", "axis"), [(11, None), (11, 1), (11, 2), (11, -1), (11, 0), (13, None), (13, 1), (13, -2), (13, 0)])
def test_softmax(op, opset, axis):
    rng = np.random.default_rng(0)
    attrs = {} if axis is None else {"axis": axis}
    m = op_model(op, {"x": ["N", 3, 4, 5]}, attrs, opset=opset)
    check_vjp(m, {"x": rng.standard_normal((2, 3, 4, 5))})
