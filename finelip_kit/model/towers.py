"""The two towers. Each returns a global embedding and its local tokens, projected.

``VisionTower`` wraps a timm CLIP-style ViT whose head is the projection: ``global_`` is
the class token and ``tokens`` the patch tokens, both after the final norm and the head.
``TextTower`` wraps a transformers ``CLIPTextModel`` plus a projection: ``global_`` is the
EOT state and ``tokens`` every position, with ``mask`` marking the tokens before the EOT
(BOS and words: what ATRM aggregates).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .config import TextConfig, VisionConfig
from ..math.positional import stretch_position_embedding


@dataclass
class Features:
    """What a tower (or ``FineLIP.encode_*``) returns.

    ``global_`` ``(b, d)``; ``tokens`` ``(b, n, d)``; ``mask`` ``(b, n)`` bool, True where a
    token is valid; ``slot_weights`` ``(b, k, n_local)``: ATRM's weights, when refined.
    """

    global_: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    slot_weights: torch.Tensor | None = None

    def detach(self) -> "Features":
        weights = None if self.slot_weights is None else self.slot_weights.detach()
        return Features(self.global_.detach(), self.tokens.detach(), self.mask, weights)

    def to(self, device) -> "Features":
        weights = None if self.slot_weights is None else self.slot_weights.to(device)
        return Features(self.global_.to(device), self.tokens.to(device), self.mask.to(device), weights)

    @staticmethod
    def cat(parts: list["Features"]) -> "Features":
        """Concatenate along the batch; tokens and masks are padded to the longest part."""
        length = max(p.tokens.shape[1] for p in parts)
        tokens = torch.cat([F.pad(p.tokens, (0, 0, 0, length - p.tokens.shape[1])) for p in parts])
        mask = torch.cat([F.pad(p.mask, (0, length - p.mask.shape[1])) for p in parts])
        weights = None
        if all(p.slot_weights is not None for p in parts):
            local = max(p.slot_weights.shape[-1] for p in parts)
            weights = torch.cat([F.pad(p.slot_weights, (0, local - p.slot_weights.shape[-1])) for p in parts])
        return Features(torch.cat([p.global_ for p in parts]), tokens, mask, weights)


class VisionTower(nn.Module):
    """A timm VisionTransformer whose ``head`` is CLIP's projection to the joint space (no bias)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        head = vit.head
        if head.bias is not None:
            if head.bias.abs().max() > 0:
                raise ValueError("the ViT head has a non-zero bias; CLIP's projection has none")
            projection = nn.Linear(head.in_features, head.out_features, bias=False)
            projection.weight = head.weight
            vit.head = projection
        self.vit = vit

    @classmethod
    def from_config(cls, config: VisionConfig, embed_dim: int) -> "VisionTower":
        import timm
        from timm.models.vision_transformer import VisionTransformer

        if config.timm_name is not None:
            vit = timm.create_model(
                config.timm_name,
                pretrained=False,
                num_classes=embed_dim,
                img_size=config.image_size,
                patch_size=config.patch_size,
                embed_dim=config.width,
                depth=config.depth,
                num_heads=config.heads,
            )
            nn.init.zeros_(vit.head.bias)
            return cls(vit)
        vit = VisionTransformer(
            img_size=config.image_size,
            patch_size=config.patch_size,
            embed_dim=config.width,
            depth=config.depth,
            num_heads=config.heads,
            mlp_ratio=config.mlp_ratio,
            pre_norm=True,  # CLIP's ln_pre; also drops the patch-embedding bias, as in CLIP
            class_token=True,
            global_pool="token",
            num_classes=embed_dim,
            act_layer=config.act,
            norm_layer=partial(nn.LayerNorm, eps=config.norm_eps),
        )
        nn.init.zeros_(vit.head.bias)
        return cls(vit)

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.vit.patch_embed.grid_size)

    def forward(self, images: torch.Tensor) -> Features:
        """``images`` ``(b, 3, h, w)``, normalised → ``Features`` with ``(b, h/p · w/p)`` patch tokens."""
        hidden = self.vit.forward_features(images)  # (b, prefix + patches, width), final norm applied
        projected = self.vit.head(hidden)
        tokens = projected[:, self.vit.num_prefix_tokens :]
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return Features(global_=projected[:, 0], tokens=tokens, mask=mask)


class PositionTable(nn.Module):
    """A position-embedding table whose first ``frozen`` rows are fixed and the rest trainable.

    Long-CLIP keeps the knowledge-preserved rows (< 20) of the stretched table frozen and
    trains the others. Callable like ``nn.Embedding`` (``table(position_ids)``, ``.weight``),
    so it drops into transformers' ``CLIPTextEmbeddings``.
    """

    def __init__(self, table: torch.Tensor, frozen: int = 0):
        super().__init__()
        if not 0 <= frozen <= table.shape[0]:
            raise ValueError(f"frozen rows must be in [0, {table.shape[0]}], got {frozen}")
        self.frozen = nn.Buffer(table[:frozen].detach().clone())
        self.trainable = nn.Parameter(table[frozen:].detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.frozen, self.trainable])

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(position_ids, self.weight)


class TextTower(nn.Module):
    """A transformers ``CLIPTextModel`` with a projection, a long context and robust EOT pooling."""

    def __init__(self, transformer: nn.Module, projection: nn.Linear):
        super().__init__()
        self.transformer = transformer
        self.projection = projection
        self.eos_token_id = _single_id(transformer.config.eos_token_id, "eos_token_id")
        self.pad_token_id = transformer.config.pad_token_id

    @classmethod
    def from_config(cls, config: TextConfig, embed_dim: int) -> "TextTower":
        from transformers import CLIPTextConfig, CLIPTextModel

        hf_config = CLIPTextConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.width,
            intermediate_size=config.mlp_dim,
            num_hidden_layers=config.depth,
            num_attention_heads=config.heads,
            max_position_embeddings=config.pretrained_context,
            hidden_act=config.act,
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            pad_token_id=config.pad_token_id,
            projection_dim=embed_dim,
            layer_norm_eps=config.norm_eps,
        )
        tower = cls(CLIPTextModel(hf_config), nn.Linear(config.width, embed_dim, bias=False))
        tower.stretch_positions(config)
        return tower

    @property
    def context_length(self) -> int:
        return self.transformer.embeddings.position_ids.shape[-1]

    @property
    def position_table(self) -> torch.Tensor:
        """The effective ``(positions, width)`` table, whatever module holds it."""
        return self.transformer.embeddings.position_embedding.weight

    def stretch_positions(self, config: TextConfig) -> None:
        """Resize the position table to ``config.positions`` rows with ``config.stretch``.

        With ``freeze_kept_positions`` the first ``keep`` rows become a frozen buffer and the
        rest stay trainable (Long-CLIP's split). The HF config and ``position_ids`` follow.
        """
        table = self.position_table.detach()
        new = stretch_position_embedding(table, config.positions, keep=config.keep, mode=config.stretch)
        frozen = min(config.keep, config.positions) if config.freeze_kept_positions and config.stretch != "none" else 0
        self.set_position_table(new, frozen=frozen)

    def set_position_table(self, table: torch.Tensor, frozen: int = 0) -> None:
        """Install a ``(positions, width)`` table (the seam that weight loaders use)."""
        embeddings = self.transformer.embeddings
        embeddings.position_embedding = PositionTable(table, frozen=frozen)
        device = embeddings.position_ids.device
        embeddings.position_ids = torch.arange(table.shape[0], device=device).expand(1, -1)
        self.transformer.config.max_position_embeddings = table.shape[0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Features:
        """``input_ids`` ``(b, n)`` right-padded, each row ``BOS ... EOT pad*`` → ``Features``.

        The EOT position is the last attended token when ``attention_mask`` is given, else the
        first EOT id after position 0; either way it must hold the EOT id (a row truncated
        without its EOT raises instead of silently pooling BOS, as transformers would).
        """
        if input_ids.shape[1] > self.context_length:
            raise ValueError(
                f"input_ids has {input_ids.shape[1]} positions but the text tower has {self.context_length}; "
                f"tokenize with context_length={self.context_length} (get_tokenizer(context_length=...))"
            )
        eot = self.eot_positions(input_ids, attention_mask)
        # No padding mask is passed on purpose: attention is causal, so every position up to the
        # EOT is unaffected by later padding, and the plain causal path is faster.
        hidden = self.transformer(input_ids=input_ids).last_hidden_state
        tokens = self.projection(hidden)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        mask = positions[None, :] < eot[:, None]
        return Features(global_=tokens[rows, eot], tokens=tokens, mask=mask)

    def eot_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(b,)`` index of each row's EOT token (see ``forward``)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if attention_mask is not None:
            lengths = attention_mask.long().sum(-1)
            if not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]):
                raise ValueError("attention_mask must be right-padded: ones for the tokens, then zeros")
            eot = (lengths - 1).clamp(min=0)
        else:
            is_eot = (input_ids == self.eos_token_id) & (positions[None, :] > 0)
            eot = torch.where(is_eot.any(-1), is_eot.int().argmax(-1), 0)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        bad = (input_ids[rows, eot] != self.eos_token_id) | (eot == 0)
        if bad.any():
            raise ValueError(
                f"text rows {bad.nonzero().flatten().tolist()[:10]} have no end-of-text token "
                f"(id {self.eos_token_id}) where the sequence ends; tokenize with finelip_kit.get_tokenizer, "
                f"which keeps the EOT when it truncates"
            )
        return eot


def _single_id(value, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"text config {name} must be a single id, got {value}")
        value = value[0]
    if value is None:
        raise ValueError(f"text config needs {name} (CLIP's <|endoftext|> id, 49407)")
    return int(value)
