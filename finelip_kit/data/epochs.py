"""The epoch plan both training samplers follow: the map-style ``train.sampling.EpochSampler``
(indices into the pairs) and the streamed ``data.shards.ShardEpoch`` (batches from webdataset
shards). Each epoch is ``batches_per_epoch`` whole global batches (``batch_size · world_size``
items; the tail past the last one is left out, a different tail each epoch); ``set_epoch(epoch,
start_batch)`` resumes mid-epoch. What is random in an epoch is a function of the run's seed:

    epoch_seed(seed, epoch)          the epoch's shuffle (and the DataLoader's generator)
    sample_seed(seed, epoch, key)    one item's augmentation (key: its index or position) or one
                                     rank's shuffle window (key: the rank)

so a resumed run draws exactly what the uninterrupted run draws.
"""

from __future__ import annotations

import torch


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s order."""
    return seed * 100_003 + epoch


def sample_seed(seed: int, epoch: int, key: int) -> int:
    """The seed of one item (or one rank's window) in an epoch; ``hash`` of integers is fixed
    across processes and Python runs (no ``PYTHONHASHSEED`` dependence)."""
    return hash((seed, epoch, key)) % 2**62


class EpochPlan:
    """An epoch of ``size`` items in whole global batches for rank ``rank`` of ``world_size``."""

    def __init__(self, size: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 what: str = "training pairs"):
        self.size, self.batch_size, self.seed, self.rank, self.world_size = size, batch_size, seed, rank, world_size
        self.epoch, self.start_batch = 0, 0
        if self.batches_per_epoch == 0:
            raise ValueError(f"{size} {what} are fewer than one global batch ({batch_size} x {world_size} ranks); "
                             f"lower batch_size or add data")

    @property
    def batches_per_epoch(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    @property
    def dropped_per_epoch(self) -> int:
        """Items past the last whole global batch: left out of each epoch (a different tail each epoch)."""
        return self.size - self.batches_per_epoch * self.batch_size * self.world_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def generator(self) -> torch.Generator:
        """The current epoch's generator (``epoch_seed``)."""
        return torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
