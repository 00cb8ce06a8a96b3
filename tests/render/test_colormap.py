from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from onnxlens.errors import ConfigurationError
from onnxlens.render import COLORMAPS, apply_colormap, colormap_table

REQUIRED = ("jet", "viridis", "inferno", "magma", "turbo", "gray")


def matplotlib_table(name: str) -> np.ndarray:
    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255.0).astype(np.uint8)


def test_required_names_present() -> None:
    assert set(REQUIRED) <= set(COLORMAPS)


@pytest.mark.parametrize("name", COLORMAPS)
def test_table_equals_matplotlib(name: str) -> None:
    table = colormap_table(name)
    assert table.dtype == np.uint8 and table.shape == (256, 3)
    np.testing.assert_array_equal(table, matplotlib_table(name))


@pytest.mark.parametrize("name", REQUIRED)
def test_apply_colormap_index_rule(name: str) -> None:
    rng = np.random.default_rng(0)
    values = rng.random((3, 17, 19), dtype=np.float32) * 1.4 - 0.2  # also out of [0, 1]
    values[0, 0, :3] = [np.nan, 0.5, 1.0 / 510.0]
    out = apply_colormap(values, name)
    idx = np.floor(np.clip(values, 0, 1) * np.float32(255) + np.float32(0.5))
    idx = np.nan_to_num(idx, nan=0.0).astype(np.int64)
    assert out.shape == (3, 17, 19, 3)
    np.testing.assert_array_equal(out, matplotlib_table(name)[idx])


def test_unknown_colormap_lists_known() -> None:
    with pytest.raises(ConfigurationError, match="use one of: jet"):
        apply_colormap(np.zeros(3, np.float32), "jett")
