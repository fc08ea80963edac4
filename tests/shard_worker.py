"""Run under torchrun by tests/test_shards.py: the Trainer's own batches of the first epochs over
webdataset shards, on this rank with 2 DataLoader worker processes; rank 0 writes every rank's
image ids (in batch order) to one JSON file per epoch."""

import json
import sys

import torch.distributed as dist

from finelip_kit import create_model
from finelip_kit.data import load_pairs
from finelip_kit.train import TrainConfig, Trainer


def main(shards: str, out: str, epochs: int) -> None:
    dist.init_process_group("gloo")
    model = create_model("tiny", **{"vision.image_size": 32, "text.context_length": 200, "atrm_k": 4})
    config = TrainConfig(out_dir=out, batch_size=4, num_workers=2, shuffle_buffer=8, progress=False)
    trainer = Trainer(model, load_pairs(f"wds:{shards}"), config)
    batches = trainer._batches()  # epoch after epoch, as fit reads them
    for epoch in range(epochs):
        seen = [next(batches)[0]["image_ids"].tolist() for _ in range(trainer.steps_per_epoch)]
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, seen)
        if dist.get_rank() == 0:
            with open(f"{out}{epoch}.json", "w") as file:
                json.dump(gathered, file)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
