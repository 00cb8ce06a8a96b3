"""The local engine: shards in order on this machine, each finished shard checkpointed atomically."""

from __future__ import annotations

from collections.abc import Sequence

from .checkpoint import Checkpoint
from .dataset import Dataset, Shard
from .runner import ShardRunner


def run_local(
    runner: ShardRunner,
    dataset: Dataset,
    shards: Sequence[Shard],
    channels: Sequence[int],
    checkpoint: Checkpoint,
    progress: bool = True,
    done_items: int = 0,
) -> None:
    """Mine `shards` (the ones not finished yet). A progress bar shows
    images/s over the whole DATA (finished shards counted as done)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(dataset),
            initial=done_items,
            unit="img",
            unit_scale=True,
            desc="mining",
            smoothing=0.1,
            dynamic_ncols=True,
        )
    try:
        for shard in shards:
            states, skipped = runner.run_shard(
                dataset, shard, channels, on_batch=bar.update if bar else None
            )
            checkpoint.save_shard(shard.index, runner.layers, states, skipped)
    finally:
        if bar is not None:
            bar.close()
