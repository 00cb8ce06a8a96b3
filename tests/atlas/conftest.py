"""Fixtures of the atlas tests: a tiny atlas (synthetic model, real-photo crops) and a small
atlas of EfficientNet-Lite0 over the photos, each built once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from atlas_data import LITE_LAYERS, TINY, photo_folder, tiny_files


@pytest.fixture(scope="session")
def tiny_atlas(tmp_path_factory: pytest.TempPathFactory):
    from onnxlens.atlas import build_atlas

    root = tmp_path_factory.mktemp("tiny_atlas")
    model, data = tiny_files(root / "in")
    atlas = build_atlas(model, data, root / "site", **TINY)
    return model, data, atlas


@pytest.fixture(scope="session")
def lite_atlas(
    tmp_path_factory: pytest.TempPathFactory, efficientnet_path: Path, photos: list[np.ndarray]
):
    from onnxlens import Model
    from onnxlens.atlas import build_atlas

    root = tmp_path_factory.mktemp("lite_atlas")
    data = photo_folder(root / "photos", photos)
    model = Model(efficientnet_path)
    # The browser atlas: 2 layers x 8 channels of Lite0, few steps at 64x64.
    atlas = build_atlas(
        model, data, root / "site", layers=LITE_LAYERS, channels=8, steps=8, size=(64, 64),
        top_k=4, n_classes=3, progress=False,
    )  # fmt: skip
    return model, data, atlas
