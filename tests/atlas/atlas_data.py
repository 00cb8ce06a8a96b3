"""Models, data and settings shared by the atlas tests (plain functions and constants; the
fixtures live in tests/atlas/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: mining_data
from mining_data import conv_model, photo_crops, write_folder

#: The tiny atlas: the mining tests' conv net (conv-relu-maxpool-conv-relu-GAP-fc, 4 classes)
#: charted at its maxpool output p1 (8 channels) and its second conv c2 (6 channels, linear in
#: p1, so its connections to p1 have a closed form). One channel per synthesis batch and small
#: mining shards: many checkpoints for the resume test to kill between.
TINY = {
    "layers": ["p1", "c2"],
    "channels": 4,
    "steps": 16,
    "vis_batch": 1,
    "shard_size": 6,
    "top_k": 5,
    "stats_images": 64,
    "embedding": False,
    "progress": False,
}

#: Two EfficientNet-Lite0 layers (early and late) of the browser atlas.
LITE_LAYERS = ["/_blocks.5/_swish_1/Clip_output_0", "/_blocks.10/_swish_1/Clip_output_0"]


def tiny_files(root: Path) -> tuple[Path, Path]:
    """(model path, DATA folder of 24 real-photo crops in two subfolders) under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    model = root / "tiny.onnx"
    onnx.save(conv_model(), model)
    data = root / "data"
    write_folder(data, photo_crops(24, seed=1))
    return model, data


def photo_folder(root: Path, photos: list[np.ndarray], crops: int = 3, seed: int = 0) -> Path:
    """The photos and `crops` random square crops of each, as files (DATA for a real model)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, img in enumerate(photos):
        cv2.imwrite(str(root / f"photo{i}.png"), img[:, :, ::-1])
        h, w = img.shape[:2]
        for j in range(crops):
            s = int(rng.integers(min(h, w) // 3, min(h, w) * 2 // 3))
            y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            cv2.imwrite(str(root / f"photo{i}_crop{j}.jpg"), img[y : y + s, x : x + s, ::-1])
    return root


def data_files(out: Path) -> dict[str, bytes]:
    """Every file of an atlas folder except the run lock's state/ folders: the data files
    (arrays, JSON, images) and the pages, by relative path."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and "state" not in p.relative_to(out).parts
    }
