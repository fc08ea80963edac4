"""FineLIP: two towers, ATRM on each side, CLIM scores, and the configured loss recipe.

    model = create_model("tiny")
    image = model.encode_image(images)                    # Features: global_, tokens, mask
    text = model.encode_text(ids, attention_mask)
    scores = model.similarity(image, text, mode="fused")  # (n_images, n_texts)
    terms = model(batch)                                  # {"loss", "global", "fine", ...}

``encode_*`` return the tokens CLIM compares: the global token (class / EOT) first, then
the K refined tokens (or, with ATRM off, every local token with its mask).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

from ..math.atrm import ATRM
from ..math.clim import DEFAULT_CHUNK_BYTES, clim_scores
from .config import ATTENTION, SCORE_MODES, FineLIPConfig, preset
from ..math.losses import (
    gather_no_grad,
    gather_with_grad,
    info_nce,
    positives_from_ids,
    primary_component_loss,
    slot_overlap,
    triplet_loss,
    world,
)
from .towers import Features, TextTower, VisionTower
from ..weights import load as weights_load


class FineLIP(nn.Module):
    def __init__(self, config: FineLIPConfig):
        super().__init__()
        self.config = config
        self.vision = VisionTower.from_config(config.vision, config.embed_dim)
        self.text = TextTower.from_config(config.text, config.embed_dim)
        refine = config.use_atrm and config.use_clim
        self.image_atrm = ATRM(config.embed_dim, config.atrm_k, config.atrm_hidden_ratio, config.atrm_scale_init) if refine else None
        self.text_atrm = ATRM(config.embed_dim, config.text_k, config.atrm_hidden_ratio, config.atrm_scale_init) if refine else None
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))

    @property
    def context_length(self) -> int:
        return self.text.context_length

    # ---------------------------------------------------------------- how the towers execute
    def set_attention(self, kind: str) -> "FineLIP":
        """Both towers' attention: ``"sdpa"`` (PyTorch's fused scaled-dot-product kernels: timm's
        fused attention, transformers' SDPA implementation; the default) or ``"eager"`` (the
        explicit softmax(QKᵀ)V, the reference). The same function either way: only speed,
        memory and rounding differ."""
        if kind not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {kind!r}")
        for block in self.vision.vit.blocks:
            block.attn.fused_attn = kind == "sdpa"
        self.text.transformer.set_attn_implementation(kind)
        return self

    @property
    def attention(self) -> str:
        fused = {block.attn.fused_attn for block in self.vision.vit.blocks}
        text = self.text.transformer.config._attn_implementation
        return text if fused == {text == "sdpa"} else f"mixed (vision fused={sorted(fused)}, text {text})"

    def set_grad_checkpointing(self, enabled: bool = True) -> "FineLIP":
        """Recompute each tower block's activations in the backward pass instead of keeping them
        (less memory for L/14 at large batch, about a third more compute); the gradients are the same."""
        self.vision.vit.set_grad_checkpointing(enabled)
        text = self.text.transformer
        new_names = hasattr(text, "activation_checkpointing_enable")  # transformers >= 5.x's names
        if enabled and new_names:
            text.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        elif enabled:
            text.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            (text.activation_checkpointing_disable if new_names else text.gradient_checkpointing_disable)()
        return self

    def compile_towers(self, backend: str = "inductor") -> "FineLIP":
        """``torch.compile`` the two towers in place (the state dict keeps its keys); ATRM and the
        losses, whose scalars change every step, stay eager. The first call of each compiles."""
        self.vision.compile(backend=backend)
        self.text.compile(backend=backend)
        return self

    # ---------------------------------------------------------------- weights in and out
    @classmethod
    def from_clip(cls, source: str, **overrides: Any) -> "FineLIP":
        """Start from a transformers CLIP (``"openai/clip-vit-base-patch16"`` or a local dir).

        Vision weights go into the timm ViT, text weights into the text tower, then the
        positions are stretched (``context_length=248``, ``stretch="kps"`` by default, first 20
        rows frozen); ATRM is freshly initialised (restored when ``source`` is an
        ``export_clip`` directory). ``overrides``: config keys (``atrm_k=16``,
        ``"text.freeze_kept_positions"=False``, ...), and ``vision_timm=name`` or ``(name, file)``
        or ``(name, file, timm_kwargs)`` to take the image tower from a timm CLIP ViT instead.
        """
        return weights_load.from_clip(cls, source, **overrides)

    @classmethod
    def from_openai_checkpoint(cls, path: str, **overrides: Any) -> "FineLIP":
        """Start from an OpenAI-format ``.pt`` (OpenAI CLIP, or Long-CLIP's ``longclip-B/L.pt``,
        whose effective position table — base rows < 20, residual rows after — is kept exactly)."""
        return weights_load.from_openai_checkpoint(cls, path, **overrides)

    @classmethod
    def from_pretrained(cls, directory: str, **overrides: Any) -> "FineLIP":
        """Restore a ``save_pretrained`` directory exactly; with config ``overrides``, start a new
        configuration from it (e.g. a 77-token base stretched to 248 with ATRM on)."""
        return weights_load.load_pretrained(cls, directory, **overrides)

    def save_pretrained(self, directory: str, tokenizer=None) -> None:
        """Write ``config.json``, ``model.safetensors`` and tokenizer files to ``directory``."""
        weights_load.save_pretrained(self, directory, tokenizer)

    # ---------------------------------------------------------------- training
    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters the pretrained towers did not have: ATRM, the temperature, and the
        position rows a stretch adds when the kept rows are frozen (Long-CLIP / FineLIP)."""
        new = [self.logit_scale]
        for atrm in (self.image_atrm, self.text_atrm):
            if atrm is not None:
                new += list(atrm.parameters())
        positions = self.text.transformer.embeddings.position_embedding
        if self.config.text.freeze_kept_positions and isinstance(getattr(positions, "trainable", None), nn.Parameter):
            new.append(positions.trainable)
        return new

    def parameter_groups(self, lr_backbone: float, lr_new: float, weight_decay: float, lr_positions: float | None = None,
                         lr_logit_scale: float | None = None, weight_decay_on: str = "weights") -> list[dict[str, Any]]:
        """AdamW groups: pretrained towers vs ``new_parameters``; among the new ones the trainable
        position rows (``lr_positions``) and the temperature (``lr_logit_scale``) get their own
        group (None: ``lr_new``). Each is split into decayed parameters and the undecayed rest:
        ``weight_decay_on="weights"`` decays the weights of linear and convolution layers only
        (norms, biases, embeddings, position tables, class token are not), ``"all"`` decays
        every parameter (the official code). Chosen by module and identity, never by name.
        Each group carries ``kind`` (backbone / new) and ``role`` (towers, atrm, positions, logit_scale)."""
        if weight_decay_on not in ("weights", "all"):
            raise ValueError(f"weight_decay_on must be 'weights' or 'all', got {weight_decay_on!r}")
        new = {id(p) for p in self.new_parameters()}
        roles = {id(self.logit_scale): ("logit_scale", lr_logit_scale)}
        positions = getattr(self.text.transformer.embeddings.position_embedding, "trainable", None)
        if id(positions) in new:
            roles[id(positions)] = ("positions", lr_positions)
        decayed = {id(m.weight) for m in self.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))}
        groups: dict[tuple[str, str, bool], tuple[list[nn.Parameter], list[str], float]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            kind = "new" if id(param) in new else "backbone"
            role, own_lr = roles.get(id(param), ("atrm" if kind == "new" else "towers", None))
            lr = own_lr if own_lr is not None else lr_new if kind == "new" else lr_backbone
            key = (kind, role, weight_decay_on == "all" or id(param) in decayed)
            groups.setdefault(key, ([], [], lr))
            groups[key][0].append(param)
            groups[key][1].append(name)
        return [
            {"params": params, "names": names, "lr": lr, "weight_decay": weight_decay if key[2] else 0.0,
             "kind": key[0], "role": key[1]}
            for key, (params, names, lr) in sorted(groups.items(), key=lambda item: item[0])
        ]

    # ---------------------------------------------------------------- encoding
    def encode_image(self, images: torch.Tensor, fine: bool = True) -> Features:
        """``(b, 3, h, w)`` → ``Features``; ``fine=False`` returns the raw tower output (no ATRM)."""
        features = self.vision(images)
        return self._fine_tokens(features, self.image_atrm) if fine else features

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, fine: bool = True
    ) -> Features:
        """``(b, n)`` token ids → ``Features``; ``fine=False`` returns the raw tower output (no ATRM)."""
        features = self.text(input_ids, attention_mask)
        return self._fine_tokens(features, self.text_atrm) if fine else features

    def _fine_tokens(self, features: Features, atrm: ATRM | None) -> Features:
        """The global token followed by the refined tokens (or all valid local tokens)."""
        global_token = rearrange(features.global_, "b d -> b 1 d")
        ones = torch.ones_like(features.mask[:, :1])
        if atrm is None:
            tokens = torch.cat([global_token, features.tokens], dim=1)
            return Features(features.global_, tokens, torch.cat([ones, features.mask], dim=1))
        refined, weights = atrm(features.tokens, features.mask)
        # A row with no local token (an empty caption) has all-zero refined tokens: mask them out.
        refined_mask = rearrange(features.mask.any(-1), "b -> b 1").expand(-1, atrm.k)
        tokens = torch.cat([global_token, refined], dim=1)
        return Features(features.global_, tokens, torch.cat([ones, refined_mask], dim=1), slot_weights=weights)

    # ---------------------------------------------------------------- scoring
    def similarity(
        self,
        image: Features,
        text: Features,
        mode: str | None = None,
        fuse_weight: float | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> torch.Tensor:
        """``(n_images, n_texts)`` scores: ``global`` cosine, ``fine`` CLIM, or ``fused``:
        ``(1 - w)·global + w·fine`` (FineLIP*: w = 0.2)."""
        mode = mode or self.config.score_mode
        weight = self.config.fuse_weight if fuse_weight is None else fuse_weight
        if mode not in SCORE_MODES:
            raise ValueError(f"mode must be one of {SCORE_MODES}, got {mode!r}")
        if mode != "global" and not self.config.use_clim:
            raise ValueError(f"mode {mode!r} needs CLIM, but this model has use_clim=False; use mode='global'")
        if mode == "global":
            return global_similarity(image.global_, text.global_)
        fine = self.fine_similarity(image, text, chunk_bytes)
        if mode == "fine":
            return fine
        return (1 - weight) * global_similarity(image.global_, text.global_) + weight * fine

    def fine_similarity(self, image: Features, text: Features, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
        return clim_scores(image.tokens, text.tokens, text.mask, image.mask, self.config.clim_slope, chunk_bytes)

    # ---------------------------------------------------------------- training
    def forward(
        self, batch: dict[str, Any], fine_weight: float | None = None, negatives: str | None = None,
        global_weight: float | None = None, augmented_weight: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Loss terms for a batch of pairs: ``{"loss": total, "global"?, "fine"?, "pcm"?,
        "global_augmented"?, "fine_augmented"?}``.

        ``batch``: ``images`` ``(b, 3, h, w)``, ``input_ids`` ``(b, n)``, optional
        ``attention_mask``, ``image_ids`` ``(b,)`` (pairs sharing an image are not negatives),
        ``short_input_ids``/``short_attention_mask`` (for the primary-component term),
        ``augmented_input_ids``/``augmented_attention_mask`` (a second text input: DeBias-CLIP's
        augmented caption, with the same losses, weighted by ``augmented_weight``).
        ``fine_weight``/``negatives``/``global_weight`` override the config (the trainer's ramp,
        switch and fine-only warm-up).
        """
        return self.loss_terms(**self.encode_batch(batch), image_ids=batch.get("image_ids"), fine_weight=fine_weight,
                               negatives=negatives, global_weight=global_weight, augmented_weight=augmented_weight)

    def encode_batch(self, batch: dict[str, Any]) -> dict[str, Features | None]:
        """Everything the losses need from a batch: ``image``, ``text``, (for PCM) ``short`` and (for
        two text inputs) ``augmented``."""
        fine = self.config.loss != "global"
        short = None
        if self.config.pcm_weight > 0:
            if "short_input_ids" not in batch:
                raise KeyError("pcm_weight > 0 needs short captions in the batch ('short_input_ids'); set pcm_weight=0 or add them")
            short = self.text(batch["short_input_ids"], batch.get("short_attention_mask"))
        augmented = None
        if "augmented_input_ids" in batch:
            augmented = self.encode_text(batch["augmented_input_ids"], batch.get("augmented_attention_mask"), fine=fine)
        return {
            "image": self.encode_image(batch["images"], fine=fine),
            "text": self.encode_text(batch["input_ids"], batch.get("attention_mask"), fine=fine),
            "short": short,
            "augmented": augmented,
        }

    def loss_terms(
        self,
        image: Features,
        text: Features,
        image_ids: torch.Tensor | None = None,
        short: Features | None = None,
        fine_weight: float | None = None,
        negatives: str | None = None,
        global_weight: float | None = None,
        augmented: Features | None = None,
        augmented_weight: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """The configured loss recipe on encoded features (see ``forward``). With ``augmented``
        (a second text input for the same images), the global and fine terms are also computed on
        it (``global_augmented``, ``fine_augmented``) and added with ``augmented_weight``:
        DeBias-CLIP's loss(full caption) + loss(augmented caption) at weight 1."""
        cfg = self.config
        fine_weight = cfg.fine_weight if fine_weight is None else fine_weight
        global_weight = cfg.global_weight if global_weight is None else global_weight
        negatives = negatives or cfg.negatives
        scale = self.logit_scale.clamp(max=cfg.logit_scale_max)
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=image.global_.device)
        inputs = [("", text, 1.0)] + ([("_augmented", augmented, augmented_weight)] if augmented is not None else [])
        for suffix, caption, weight in inputs:
            if cfg.loss in ("global", "global+fine"):
                terms["global" + suffix] = info_nce(image.global_, caption.global_, scale, image_ids, cfg.local_loss,
                                                    cfg.label_smoothing)
                total = total + weight * global_weight * terms["global" + suffix]
            if cfg.loss in ("fine", "global+fine"):
                terms["fine" + suffix] = self._fine_loss(image, caption, image_ids, negatives)
                total = total + weight * fine_weight * terms["fine" + suffix]
        if cfg.slot_diversity_weight > 0:
            if image.slot_weights is None or text.slot_weights is None:
                raise ValueError("slot_diversity_weight > 0 needs ATRM's slot weights (features from encode_image / encode_text)")
            terms["diversity"] = 0.5 * (slot_overlap(image.slot_weights) + slot_overlap(text.slot_weights))
            total = total + cfg.slot_diversity_weight * terms["diversity"]
        if cfg.pcm_weight > 0:
            if short is None:
                raise KeyError("pcm_weight > 0 needs the short captions' features (short=...)")
            terms["pcm"] = primary_component_loss(image.global_, short.global_, scale, cfg.pcm_components, image_ids,
                                                  cfg.label_smoothing, cfg.pcm_variant, cfg.local_loss)
            total = total + cfg.pcm_weight * terms["pcm"]
        terms["loss"] = total
        return terms

    def _fine_loss(self, image: Features, text: Features, image_ids: torch.Tensor | None, negatives: str) -> torch.Tensor:
        """Triplet loss on the CLIM score matrix of the batch gathered across ranks."""
        text_tokens, text_mask = text.tokens, text.mask
        if world()[1] > 1 and self.text_atrm is None:
            # Ranks pad their batches to different lengths; pad to the context to gather.
            pad = self.context_length - text_tokens.shape[1]
            text_tokens, text_mask = F.pad(text_tokens, (0, 0, 0, pad)), F.pad(text_mask, (0, pad))
        image_tokens = gather_with_grad(image.tokens)
        text_tokens, text_mask = gather_with_grad(text_tokens), gather_no_grad(text_mask)
        image_mask = gather_no_grad(image.mask)
        ids = None if image_ids is None else gather_no_grad(image_ids)
        scores = clim_scores(image_tokens, text_tokens, text_mask, image_mask, self.config.clim_slope)
        positives = positives_from_ids(ids, scores.shape[0], scores.device)
        return triplet_loss(scores, positives, self.config.margin, negatives, self.config.triplet_reduction)


def global_similarity(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of global embeddings: ``(i, d)``, ``(t, d)`` → ``(i, t)``."""
    return einsum(F.normalize(image_embeds, dim=-1), F.normalize(text_embeds, dim=-1), "i d, t d -> i t")


def create_model(name_or_config: str | FineLIPConfig = "tiny", **overrides: Any) -> FineLIP:
    """A freshly initialised model from a preset name (``tiny``, ``clip-b16``, ``clip-l14``) or a config."""
    if isinstance(name_or_config, FineLIPConfig):
        config = name_or_config.replace(**overrides) if overrides else name_or_config
    else:
        config = preset(name_or_config, **overrides)
    return FineLIP(config)
