"""Dataset mining: top-k maximally activating images and patches per channel, and embeddings.

`mine(model, data, layers, out)` scans DATA (a folder, a list file or a parquet file), keeps for
every channel the k images with the highest spatial max (or mean), their arg-max unit and its
receptive-field box, writes a resumable, documented result to `out`, and `load(out)` reads it
back; `ray=RayOptions(...)` says how the Ray engine runs, and `MiningJob` is the job the engines
receive. `embed(model, data, layer, out)` writes a layer's vectors and a 2-D t-SNE/UMAP map.
"""

from __future__ import annotations

from ..graph.receptive import Field, ReceptiveFields, receptive_field
from .config import MiningJob, RayOptions
from .dataset import Dataset, open_dataset
from .embed import embed
from .mine import mine
from .result import MiningResult, load
from .score import channel_scores, top_patches
from .topk import NumpyTopK, new_topk

__all__ = [
    "Dataset",
    "Field",
    "MiningJob",
    "MiningResult",
    "NumpyTopK",
    "RayOptions",
    "ReceptiveFields",
    "channel_scores",
    "embed",
    "load",
    "mine",
    "new_topk",
    "open_dataset",
    "receptive_field",
    "top_patches",
]
