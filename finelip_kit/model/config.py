"""Model configuration: plain dataclasses, validated on construction, named presets.

A config is data: ``FineLIPConfig.to_dict()`` / ``from_dict()`` round-trip through JSON,
and ``preset("tiny", atrm_k=8, **{"text.context_length": 77})`` builds a named
variant with overrides (dotted keys reach into the towers' configs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..math.defaults import DEFAULT_CHUNK_BYTES, STRETCH_MODES  # noqa: F401 (named with the settings)
from ..schema import Check, choice, integer, number, setting, validate

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ACTIVATIONS = ("quick_gelu", "gelu")
LOSSES = ("fine", "global", "global+fine")
NEGATIVES = ("sum", "hardest")
REDUCTIONS = ("sum", "mean")
PCM_VARIANTS = ("kit", "official")
SCORE_MODES = ("global", "fine", "fused")
ATTENTION = ("sdpa", "eager")  # how the towers compute attention (FineLIP.set_attention, train.attention)


class SettingError(KeyError, ValueError):
    """An unknown or ambiguous setting key; the message names the key, its section and the
    closest keys. A ``KeyError`` (a missing key) and a ``ValueError`` (bad input) both. The
    settings vocabulary (``finelip_kit.settings``) raises it for every section; it lives here,
    at the bottom of the kit, because the model config's keys are checked here."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def closest(name: str, candidates, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` of ``candidates`` that look like ``name`` (difflib's ratio >= ``cutoff``)."""
    import difflib

    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=cutoff)


@dataclass
class VisionConfig:
    """A CLIP-style ViT (pre-norm, class token, projection head) built with timm."""

    image_size: int = setting(224, check=integer(1))
    patch_size: int = setting(16, check=integer(1))
    width: int = setting(768, check=integer(1))
    depth: int = setting(12, check=integer(1))
    heads: int = setting(12, check=integer(1))
    mlp_ratio: float = setting(4.0, check=number(1e-6))
    act: str = setting("quick_gelu", check=choice(ACTIVATIONS))
    norm_eps: float = setting(1e-5, check=number(0.0, 1.0))
    timm_name: str | None = None  # build a named timm model instead (weights seam)
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        validate(self, "vision.")

    def relations(self):
        return [
            (self.image_size % self.patch_size == 0,
             f"vision.image_size ({self.image_size}) must be a multiple of vision.patch_size ({self.patch_size})"),
            (self.width % self.heads == 0, f"vision.width ({self.width}) must be divisible by vision.heads ({self.heads})"),
        ]

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class TextConfig:
    """A CLIP text transformer (transformers ``CLIPTextModel``) with stretched positions."""

    vocab_size: int = setting(49408, check=integer(1))
    width: int = setting(512, check=integer(1))
    depth: int = setting(12, check=integer(1))
    heads: int = setting(8, check=integer(1))
    mlp_dim: int = setting(2048, check=integer(1))
    act: str = setting("quick_gelu", check=choice(ACTIVATIONS))
    norm_eps: float = setting(1e-5, check=number(0.0, 1.0))
    pretrained_context: int = setting(77, check=integer(1))  # rows of the original position table
    context_length: int = setting(248, check=integer(1))  # rows after stretching
    stretch: str = setting("kps", check=choice(STRETCH_MODES))
    keep: int = setting(20, check=integer(0))  # rows the knowledge-preserving stretch copies unchanged
    freeze_kept_positions: bool = False  # Long-CLIP: first `keep` rows frozen, the rest trainable
    bos_token_id: int = 49406
    eos_token_id: int = 49407
    pad_token_id: int = 49407

    def __post_init__(self) -> None:
        validate(self, "text.")

    def relations(self):
        checks = [
            (self.width % self.heads == 0, f"text.width ({self.width}) must be divisible by text.heads ({self.heads})"),
            (self.stretch != "none" or self.context_length <= self.pretrained_context,
             f"text.context_length ({self.context_length}) exceeds text.pretrained_context "
             f"({self.pretrained_context}) with text.stretch='none'; set stretch to 'kps' or 'linear', "
             f"or context_length <= {self.pretrained_context}"),
            (self.stretch != "kps" or self.keep < self.pretrained_context - 1,
             f"text.keep must be < {self.pretrained_context - 1} for the 'kps' stretch, got {self.keep}"),
        ]
        return checks + [(0 <= getattr(self, name) < self.vocab_size,
                          f"text.{name} must be in [0, {self.vocab_size}), got {getattr(self, name)}")
                         for name in ("bos_token_id", "eos_token_id", "pad_token_id")]

    @property
    def positions(self) -> int:
        """Rows of the position table the model actually has."""
        return self.context_length if self.stretch != "none" else min(self.context_length, self.pretrained_context)


@dataclass
class FineLIPConfig:
    """The whole model: towers, the new modules, and the loss recipe."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    embed_dim: int = setting(512, check=integer(1))
    # ATRM: K refined tokens per modality (text defaults to the image's K).
    use_atrm: bool = True
    atrm_k: int = setting(39, check=integer(1))
    atrm_k_text: int | None = setting(None, check=integer(1))
    atrm_hidden_ratio: float = setting(0.2, check=number(1e-6))
    atrm_scale_init: float = setting(1.0, check=number(1e-6))  # the slot logits' initial scale (a kit lever, issue 18; FineLIP: 1)
    # weight of a penalty on ATRM slots' overlap (a kit lever, issue 18; FineLIP: 0)
    slot_diversity_weight: float = setting(0.0, check=number(0.0))
    # CLIM and the scores built on it.
    use_clim: bool = True
    clim_slope: float = setting(0.1, check=number(0.0, 1.0))
    score_mode: str = setting("global", check=choice(SCORE_MODES))
    fuse_weight: float = setting(0.2, check=number(0.0, 1.0))
    # Loss recipe.
    loss: str = setting("fine", check=choice(LOSSES))
    global_weight: float = setting(1.0, check=number(0.0))
    fine_weight: float = setting(1.0, check=number(0.0))
    margin: float = setting(0.2, check=number(0.0))
    negatives: str = setting("sum", check=choice(NEGATIVES))
    triplet_reduction: str = setting("sum", check=choice(REDUCTIONS))  # official FineLIP sums over the batch
    local_loss: bool = False  # open_clip's local-loss form of the gathered InfoNCE
    # of the InfoNCE terms (global, pcm); the official Long-CLIP / FineLIP baseline: 0.1
    label_smoothing: float = setting(0.0, check=Check(lambda v: 0 <= v < 1, "a number in [0, 1)"))
    pcm_weight: float = setting(0.0, check=number(0.0))  # Long-CLIP primary-component matching (0 = off)
    pcm_components: int = setting(32, check=integer(1))
    # "kit": PCA on the batch gathered across ranks with a constant basis, reduced features renormalised;
    # "official": Long-CLIP's code: PCA (SVD, gradient through it) per process, reduced features not renormalised
    pcm_variant: str = setting("kit", check=choice(PCM_VARIANTS))
    logit_scale_init: float = math.log(1 / 0.07)
    logit_scale_max: float = math.log(100.0)

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        if isinstance(self.text, dict):
            self.text = TextConfig(**self.text)
        validate(self)

    def relations(self):
        checks = [(self.logit_scale_max >= self.logit_scale_init,
                   f"logit_scale_max must be >= logit_scale_init ({self.logit_scale_init}), got {self.logit_scale_max!r}")]
        if self.use_atrm:
            patches, context = self.vision.num_patches, self.text.context_length
            checks += [
                (self.atrm_k <= patches, f"atrm_k must be <= the image's {patches} patch tokens "
                 f"({self.vision.image_size}px / patch {self.vision.patch_size}), got {self.atrm_k}: ATRM refines "
                 f"the patch tokens into K slots"),
                (self.text_k <= context, f"the text's ATRM K (atrm_k_text, else atrm_k) must be <= "
                 f"text.context_length {context}, got {self.text_k}"),
            ]
        uses_fine = self.loss != "global" or self.score_mode != "global"
        return checks + [
            (self.use_atrm or self.slot_diversity_weight == 0,
             f"slot_diversity_weight ({self.slot_diversity_weight}) acts on ATRM's slots; it needs use_atrm=True"),
            (self.use_clim or not uses_fine,
             f"use_clim=False leaves no fine-grained score, but loss={self.loss!r} and "
             f"score_mode={self.score_mode!r} need one; use loss='global' and score_mode='global'"),
        ]

    @property
    def text_k(self) -> int:
        return self.atrm_k if self.atrm_k_text is None else self.atrm_k_text

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FineLIPConfig":
        """Build from a dict (e.g. ``config.json``); unknown or missing keys are named in the error."""
        _check_keys("config", data, cls)
        vision, text = dict(data.get("vision", {})), dict(data.get("text", {}))
        _check_keys("config.vision", vision, VisionConfig)
        _check_keys("config.text", text, TextConfig)
        rest = {k: v for k, v in data.items() if k not in ("vision", "text")}
        return cls(vision=VisionConfig(**vision), text=TextConfig(**text), **rest)

    @staticmethod
    def keys() -> list[str]:
        """Every config key in ``replace``'s form: ``atrm_k``, ``vision.width``, ``text.stretch``."""
        top = [f.name for f in dataclasses.fields(FineLIPConfig) if f.name not in ("vision", "text")]
        return (top + [f"vision.{f.name}" for f in dataclasses.fields(VisionConfig)]
                + [f"text.{f.name}" for f in dataclasses.fields(TextConfig)])

    @staticmethod
    def key(name: str) -> str:
        """A config key from any name the settings vocabulary allows for it: the key itself,
        ``model.<key>``, or a bare tower field that only one tower has (``context_length``,
        ``stretch`` → ``text.*``). Otherwise a ``SettingError`` naming the closest keys."""
        keys = FineLIPConfig.keys()
        bare = name[len("model."):] if isinstance(name, str) and name.startswith("model.") else name
        if bare in keys:
            return bare
        towers = [f"{tower}.{bare}" for tower in ("vision", "text") if f"{tower}.{bare}" in keys]
        if len(towers) == 1:
            return towers[0]
        if towers:
            raise SettingError(f"setting {name!r} is ambiguous: write {' or '.join('model.' + t for t in towers)}")
        close = [f"model.{c}" for c in closest(bare, keys)]
        raise SettingError(f"unknown setting 'model.{bare}': section 'model' has no key {bare!r}"
                           + (f"; did you mean {close}?" if close else "") + f" (model.* keys: source, {', '.join(keys)})")

    def replace(self, **overrides: Any) -> "FineLIPConfig":
        """A validated copy with overrides. Keys in any form ``FineLIPConfig.key`` takes
        (``atrm_k``, ``"text.context_length"``, ``context_length``, ``stretch``); an unknown key
        is a ``SettingError`` naming the closest keys. Applied in order: a later name for the
        same key wins."""
        data = self.to_dict()
        for key, value in overrides.items():
            target, name = data, FineLIPConfig.key(key)
            if "." in name:
                section, name = name.split(".", 1)
                target = data[section]
            target[name] = value
        return FineLIPConfig.from_dict(data)


def _check_keys(where: str, data: dict[str, Any], cls: type) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingError(f"{where} has unknown keys {unknown}; known keys are {sorted(known)}")


# Config keys added after checkpoints were first saved: a config without one loads with the
# default, which is exactly the behaviour before the key existed. Any other missing key is refused.
ADDED_KEYS = ("atrm_scale_init", "slot_diversity_weight", "label_smoothing", "pcm_variant")


def _paper_k(num_patches: int) -> int:
    # FineLIP keeps int(num_patches * aggr_ratio 0.4 * sparse_ratio 0.5) tokens: 39 of 196.
    return int(num_patches * 0.4 * 0.5)


PRESETS: dict[str, dict[str, Any]] = {
    # CPU-fast, trained from scratch; 64 px images on an 8x8 patch grid.
    "tiny": dict(
        vision=dict(image_size=64, patch_size=8, width=96, depth=3, heads=3, act="gelu"),
        text=dict(width=96, depth=3, heads=3, mlp_dim=384, act="gelu"),
        embed_dim=64,
        atrm_k=16,
    ),
    # OpenAI CLIP ViT-B/16 architecture.
    "clip-b16": dict(
        vision=dict(image_size=224, patch_size=16, width=768, depth=12, heads=12),
        text=dict(width=512, depth=12, heads=8, mlp_dim=2048, freeze_kept_positions=True),
        embed_dim=512,
        atrm_k=_paper_k(196),
        logit_scale_init=math.log(100.0),
    ),
    # OpenAI CLIP ViT-L/14 architecture (224 px: 256 patches).
    "clip-l14": dict(
        vision=dict(image_size=224, patch_size=14, width=1024, depth=24, heads=16),
        text=dict(width=768, depth=12, heads=12, mlp_dim=3072, freeze_kept_positions=True),
        embed_dim=768,
        atrm_k=_paper_k(256),
        logit_scale_init=math.log(100.0),
    ),
}


def preset(name: str, **overrides: Any) -> FineLIPConfig:
    """A named config with overrides, e.g. ``preset("tiny", atrm_k=8)``."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return FineLIPConfig.from_dict(PRESETS[name]).replace(**overrides)
