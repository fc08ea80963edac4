"""finelip-kit: long-caption, fine-grained image-text alignment (FineLIP, Long-CLIP)."""

from .atrm import ATRM
from .clim import clim_pair_scores, clim_scores, token_alignment
from .config import FineLIPConfig, TextConfig, VisionConfig, preset
from .model import FineLIP, create_model, global_similarity
from .positional import stretch_position_embedding
from .pretrained import load_model
from .tokenizer import get_tokenizer
from .towers import Features, TextTower, VisionTower

from ._version import __version__
__all__ = [
    "ATRM",
    "Features",
    "FineLIP",
    "FineLIPConfig",
    "TextConfig",
    "TextTower",
    "VisionConfig",
    "VisionTower",
    "clim_pair_scores",
    "clim_scores",
    "create_model",
    "get_tokenizer",
    "global_similarity",
    "load_model",
    "preset",
    "stretch_position_embedding",
    "token_alignment",
    "__version__",
]
