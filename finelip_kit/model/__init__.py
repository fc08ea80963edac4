"""The model: architectures (configs and their presets), the two towers, the tokenizer, FineLIP, and
the one resolver from a name to a model.

    config.py      VisionConfig, TextConfig, FineLIPConfig (validated), the architecture presets (``tiny``, ``clip-b16``, ...)
    towers.py      VisionTower, TextTower (CLIP's, with a stretchable position table), Features
    tokenizer.py   CLIP's BPE tokenizer at any context length
    finelip.py     FineLIP (towers + ATRM + CLIM + losses), create_model, global_similarity
    pretrained.py  load_model / model_config (one spec parser: parse_spec), from_clip, exports (from weights/)

An *architecture preset* (``preset("tiny")``) names a model's shape; a *run preset*
(``finelip_kit.experiments.presets``) names a whole run: an architecture, data, training and evaluation.
"""

from .._lazy import lazy_exports

_CONFIG = ("ACTIVATIONS", "ATTENTION", "CLIP_MEAN", "CLIP_STD", "DEFAULT_CHUNK_BYTES", "LOSSES", "NEGATIVES", "PCM_VARIANTS",
           "PRESETS", "REDUCTIONS", "SCORE_MODES", "STRETCH_MODES", "FineLIPConfig", "SettingError", "TextConfig",
           "VisionConfig", "closest", "preset")
_PRETRAINED = ("CONFIG_FILE", "LONGCLIP_KEEP", "MODEL_FORMS", "MODULES_CONFIG_FILE", "MODULES_FILE", "SPEC_KINDS",
               "TEXT_POSITIONS", "WEIGHTS_FILE", "check_weights", "checkpoint_format", "config_from_hf", "config_from_openai",
               "convert_state_dict", "export_clip", "export_open_clip", "export_text_encoder", "finelip_to_hf", "from_clip",
               "from_openai_checkpoint", "load_converted", "load_model", "load_pretrained", "model_config", "parse_spec",
               "read_state_dict", "save_pretrained", "timm_vision_tower")
_EXPORTS = {
    **{name: ".config" for name in _CONFIG},
    **{name: ".pretrained" for name in _PRETRAINED},
    "FineLIP": ".finelip", "create_model": ".finelip", "global_similarity": ".finelip",
    "Features": ".towers", "PositionTable": ".towers", "TextTower": ".towers", "VisionTower": ".towers",
    "CLIPTextTokenizer": ".tokenizer", "TokenizedText": ".tokenizer", "get_tokenizer": ".tokenizer",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
