"""finelip-kit: long-caption, fine-grained image-text alignment (FineLIP, Long-CLIP).

The names below are imported when first used (PEP 562), so ``import finelip_kit`` and the command
line's ``finelip --help`` do not pay for torch until something needs it.
"""

from importlib import import_module

from ._version import __version__

_EXPORTS = {
    "ATRM": ".atrm",
    "Features": ".towers",
    "FineLIP": ".model",
    "FineLIPConfig": ".config",
    "TextConfig": ".config",
    "TextTower": ".towers",
    "VisionConfig": ".config",
    "VisionTower": ".towers",
    "clim_pair_scores": ".clim",
    "clim_scores": ".clim",
    "create_model": ".model",
    "get_tokenizer": ".tokenizer",
    "global_similarity": ".model",
    "load_model": ".pretrained",
    "preset": ".config",
    "stretch_position_embedding": ".positional",
    "token_alignment": ".clim",
}
__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'finelip_kit' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
