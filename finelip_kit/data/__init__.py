"""Data: one registry of sources (``datasets.SOURCES``: the embedded synthetic benchmark and the real
long-caption datasets), one loader (``load_pairs``) for them and for files, shards and hub ids,
transforms and collate."""

from .collate import CaptionView, Collate, PairDataset
from .datasets import KNOWN, SOURCES, DataSource, first_sentence, load_pairs, source_info
from .pairs import LoadReport, Pairs, open_image
from .synthetic import SyntheticConfig, SyntheticScenes, show_samples, to_hf_dataset, write_jsonl
from .transforms import clip_transform, to_rgb

__all__ = [
    "KNOWN",
    "SOURCES",
    "DataSource",
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
    "source_info",
    "to_hf_dataset",
    "to_rgb",
    "write_jsonl",
]
