"""Data: the embedded synthetic benchmark, real long-caption datasets, transforms and collate."""

from .collate import CaptionView, Collate, PairDataset
from .datasets import KNOWN, first_sentence, load_pairs
from .pairs import LoadReport, Pairs, open_image
from .synthetic import SyntheticConfig, SyntheticScenes, show_samples, to_hf_dataset, write_jsonl
from .transforms import clip_transform, to_rgb

__all__ = [
    "KNOWN",
    "CaptionView",
    "Collate",
    "LoadReport",
    "PairDataset",
    "Pairs",
    "SyntheticConfig",
    "SyntheticScenes",
    "clip_transform",
    "first_sentence",
    "load_pairs",
    "open_image",
    "show_samples",
    "to_hf_dataset",
    "to_rgb",
    "write_jsonl",
]
