"""The one mapping of foreign checkpoints (OpenAI → transformers → the kit) and the configs they imply."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..model.config import FineLIPConfig
from .files import LONGCLIP_KEEP, _NEW_MODULES, _POSITION_KEYS


# ----------------------------------------------------------------------------- the one mapping
def checkpoint_format(state_dict: dict[str, torch.Tensor]) -> str:
    """``"openai"`` (OpenAI / open_clip / Long-CLIP keys), ``"hf"`` (transformers CLIPModel) or ``"finelip"``."""
    if "visual.conv1.weight" in state_dict or "visual.class_embedding" in state_dict:
        return "openai"
    if any(k.startswith("vision_model.") for k in state_dict) or any(k.startswith("text_model.") for k in state_dict):
        return "hf"
    if any(k.startswith("vision.vit.") for k in state_dict):
        return "finelip"
    raise ValueError(
        f"unrecognised checkpoint layout (first keys: {sorted(state_dict)[:6]}); expected transformers CLIPModel "
        f"keys (vision_model.*, text_model.*), OpenAI keys (visual.*, transformer.*) or a finelip-kit checkpoint"
    )


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a foreign CLIP state dict (OpenAI, Long-CLIP or transformers layout) to the kit's names."""
    layout = checkpoint_format(state_dict)
    if layout == "finelip":
        return dict(state_dict)
    hf = _openai_to_hf(state_dict) if layout == "openai" else state_dict
    return _hf_to_finelip(hf)


# transformers name (under vision_model.) <-> timm name (under vision.vit.); {i} layer, {p} weight|bias
_VISION_NAMES = [
    ("pre_layrnorm.{p}", "norm_pre.{p}"),
    ("post_layernorm.{p}", "norm.{p}"),
    ("embeddings.patch_embedding.weight", "patch_embed.proj.weight"),
    ("encoder.layers.{i}.layer_norm1.{p}", "blocks.{i}.norm1.{p}"),
    ("encoder.layers.{i}.layer_norm2.{p}", "blocks.{i}.norm2.{p}"),
    ("encoder.layers.{i}.self_attn.out_proj.{p}", "blocks.{i}.attn.proj.{p}"),
    ("encoder.layers.{i}.mlp.fc1.{p}", "blocks.{i}.mlp.fc1.{p}"),
    ("encoder.layers.{i}.mlp.fc2.{p}", "blocks.{i}.mlp.fc2.{p}"),
]
# OpenAI residual-block name -> transformers encoder-layer name (both towers)
_OPENAI_BLOCK_NAMES = [
    ("ln_1.{p}", "layer_norm1.{p}"),
    ("ln_2.{p}", "layer_norm2.{p}"),
    ("attn.out_proj.{p}", "self_attn.out_proj.{p}"),
    ("mlp.c_fc.{p}", "mlp.fc1.{p}"),
    ("mlp.c_proj.{p}", "mlp.fc2.{p}"),
]


def _pattern(template: str) -> re.Pattern:
    escaped = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(escaped + "$")


def _rename(name: str, table: list[tuple[str, str]], reverse: bool = False) -> str | None:
    for source, target in table:
        if reverse:
            source, target = target, source
        match = _pattern(source).match(name)
        if match:
            return target.format(**match.groupdict())
    return None


def _openai_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        if key in ("input_resolution", "context_length", "vocab_size", "positional_embedding_res"):
            continue
        block = re.match(r"(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$", key)
        if block:
            tower = "vision_model" if block.group(1) else "text_model"
            prefix = f"{tower}.encoder.layers.{block.group(2)}."
            rest = block.group(3)
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = "weight" if rest.endswith("weight") else "bias"
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{name}_proj.{kind}"] = part
                continue
            renamed = _rename(rest, _OPENAI_BLOCK_NAMES)
            if renamed is None:
                unknown.append(key)
            else:
                out[prefix + renamed] = value
            continue
        if key in _OPENAI_SIMPLE:
            out[_OPENAI_SIMPLE[key]] = value
        elif key == "visual.proj":
            out["visual_projection.weight"] = value.T.contiguous()
        elif key == "text_projection":
            out["text_projection.weight"] = value.T.contiguous()
        elif key == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = _effective_text_positions(sd)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"OpenAI-format checkpoint has keys this mapping does not know: {unknown[:10]}")
    return out


_OPENAI_SIMPLE = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}


def hf_to_openai(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPModel`` state dict in OpenAI / open_clip's layout (the inverse of the
    OpenAI import): q/k/v joined into ``in_proj``, projections transposed, positions as they are."""
    inverse = {v: k for k, v in _OPENAI_SIMPLE.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in hf.items():
        layer = re.match(r"(vision|text)_model\.encoder\.layers\.(\d+)\.(.+)$", key)
        if layer:
            prefix = f"{'visual.' if layer.group(1) == 'vision' else ''}transformer.resblocks.{layer.group(2)}."
            rest = layer.group(3)
            joined = re.match(r"self_attn\.([qkv])_proj\.(weight|bias)$", rest)
            if joined:
                if joined.group(1) == "q":
                    parts = [hf[key.replace(".q_proj.", f".{x}_proj.")] for x in "qkv"]
                    out[f"{prefix}attn.in_proj_{joined.group(2)}"] = torch.cat(parts)
                continue
            renamed = _rename(rest, _OPENAI_BLOCK_NAMES, reverse=True)
            if renamed is None:
                raise ValueError(f"weight {key!r} has no place in an open_clip CLIP")
            out[prefix + renamed] = value
        elif key in inverse:
            out[inverse[key]] = value
        elif key == "visual_projection.weight":
            out["visual.proj"] = value.T.contiguous()
        elif key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif key == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif key.endswith("position_ids"):
            continue
        else:
            raise ValueError(f"weight {key!r} has no place in an open_clip CLIP")
    return out


def _effective_text_positions(sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """The position table a checkpoint actually uses (Long-CLIP: base rows < 20, residual rows after)."""
    table = sd["positional_embedding"]
    residual = sd.get("positional_embedding_res")
    if residual is None:
        return table
    if residual.shape != table.shape:
        raise ValueError(
            f"Long-CLIP checkpoint: positional_embedding {tuple(table.shape)} and positional_embedding_res "
            f"{tuple(residual.shape)} differ in shape"
        )
    return torch.cat([table[:LONGCLIP_KEEP], residual[LONGCLIP_KEEP:]])


# Whole-tensor renames between transformers' CLIPModel and the kit, used in both directions.
_RENAMES = {
    "text_projection.weight": "text.projection.weight",
    "visual_projection.weight": "vision.vit.head.weight",
    "logit_scale": "logit_scale",
}
_TEXT_PREFIXES = ("text_model.", "text.transformer.")


def _hf_to_finelip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in sd.items():
        if key.endswith("position_ids"):
            continue  # a buffer older transformers versions saved
        if key.startswith(_TEXT_PREFIXES[0]):
            out[_TEXT_PREFIXES[1] + key[len(_TEXT_PREFIXES[0]) :]] = value
        elif key in _RENAMES:
            out[_RENAMES[key]] = value
        elif key == "vision_model.embeddings.class_embedding":
            out["vision.vit.cls_token"] = value.reshape(1, 1, -1)
        elif key == "vision_model.embeddings.position_embedding.weight":
            out["vision.vit.pos_embed"] = value.unsqueeze(0)
        elif key.startswith("vision_model."):
            name = key[len("vision_model.") :]
            attention = re.match(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", name)
            if attention:
                qkv.setdefault((attention.group(1), attention.group(3)), {})[attention.group(2)] = value
                continue
            renamed = _rename(name, _VISION_NAMES)
            if renamed is None:
                unknown.append(key)
            else:
                out["vision.vit." + renamed] = value
        else:
            unknown.append(key)
    for (layer, kind), parts in qkv.items():
        if set(parts) != set("qkv"):
            raise ValueError(f"vision layer {layer}: attention {kind} has only {sorted(parts)} of q, k, v")
        out[f"vision.vit.blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    if unknown:
        raise ValueError(f"transformers CLIP checkpoint has keys this mapping does not know: {unknown[:10]}")
    return out


_INVERSE_RENAMES = {ours: hf for hf, ours in _RENAMES.items()}


def finelip_to_hf(model: nn.Module) -> dict[str, torch.Tensor]:
    """The towers of ``model`` as a transformers ``CLIPModel`` state dict (the inverse mapping)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach()
        if key in _POSITION_KEYS or key.startswith(_NEW_MODULES):
            continue
        if key.startswith(_TEXT_PREFIXES[1]):
            out[_TEXT_PREFIXES[0] + key[len(_TEXT_PREFIXES[1]) :]] = value
        elif key in _INVERSE_RENAMES:
            out[_INVERSE_RENAMES[key]] = value
        elif key == "vision.vit.cls_token":
            out["vision_model.embeddings.class_embedding"] = value.reshape(-1)
        elif key == "vision.vit.pos_embed":
            out["vision_model.embeddings.position_embedding.weight"] = value[0]
        elif key.startswith("vision.vit."):
            name = key[len("vision.vit.") :]
            attention = re.match(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", name)
            if attention:
                prefix = f"vision_model.encoder.layers.{attention.group(1)}.self_attn."
                for part, chunk in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{prefix}{part}_proj.{attention.group(2)}"] = chunk
                continue
            renamed = _rename(name, _VISION_NAMES, reverse=True)
            if renamed is None:
                raise ValueError(f"vision weight {key!r} has no place in a transformers CLIPModel (not a CLIP-style ViT?)")
            out["vision_model." + renamed] = value
        else:
            raise ValueError(f"weight {key!r} has no place in a transformers CLIPModel")
    out["text_model.embeddings.position_embedding.weight"] = model.text.position_table.detach()
    return out


# ----------------------------------------------------------------------------- configs of foreign checkpoints
def config_from_hf(hf_config, **overrides: Any) -> FineLIPConfig:
    """A ``FineLIPConfig`` for the towers of a transformers ``CLIPConfig``."""
    vision, text = hf_config.vision_config, hf_config.text_config
    data = dict(
        vision=dict(
            image_size=vision.image_size,
            patch_size=vision.patch_size,
            width=vision.hidden_size,
            depth=vision.num_hidden_layers,
            heads=vision.num_attention_heads,
            mlp_ratio=vision.intermediate_size / vision.hidden_size,
            act=_activation(vision.hidden_act),
            norm_eps=vision.layer_norm_eps,
        ),
        text=dict(
            vocab_size=text.vocab_size,
            width=text.hidden_size,
            depth=text.num_hidden_layers,
            heads=text.num_attention_heads,
            mlp_dim=text.intermediate_size,
            act=_activation(text.hidden_act),
            norm_eps=text.layer_norm_eps,
            pretrained_context=text.max_position_embeddings,
        ),
        embed_dim=hf_config.projection_dim,
    )
    return _pretrained_config(data, **overrides)


def config_from_openai(sd: dict[str, torch.Tensor], **overrides: Any) -> FineLIPConfig:
    """A ``FineLIPConfig`` read off an OpenAI-format state dict (heads = width / 64, as OpenAI's)."""
    width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = sd["ln_final.weight"].shape[0]

    def depth(prefix: str) -> int:
        return len({k.split(".")[len(prefix.split(".")) - 1] for k in sd if k.startswith(prefix)})

    data = dict(
        vision=dict(
            image_size=patch * grid,
            patch_size=patch,
            width=width,
            depth=depth("visual.transformer.resblocks."),
            heads=max(1, width // 64),
            mlp_ratio=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
            act="quick_gelu",
        ),
        text=dict(
            vocab_size=sd["token_embedding.weight"].shape[0],
            width=text_width,
            depth=depth("transformer.resblocks."),
            heads=max(1, text_width // 64),
            mlp_dim=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            act="quick_gelu",
            pretrained_context=sd["positional_embedding"].shape[0],
        ),
        embed_dim=sd["text_projection"].shape[1],
    )
    return _pretrained_config(data, **overrides)


def _activation(name: str) -> str:
    if name not in ("quick_gelu", "gelu"):
        raise ValueError(f"activation {name!r} is not supported by the kit's towers (quick_gelu, gelu)")
    return name


def _pretrained_config(data: dict[str, Any], **overrides: Any) -> FineLIPConfig:
    """Defaults for fine-tuning a pretrained CLIP the FineLIP / Long-CLIP way, then the overrides."""
    num_patches = (data["vision"]["image_size"] // data["vision"]["patch_size"]) ** 2
    data["atrm_k"] = max(1, int(num_patches * 0.2))
    data["text"].setdefault("freeze_kept_positions", True)
    data["text"]["context_length"] = max(248, data["text"]["pretrained_context"])
    return FineLIPConfig.from_dict(data).replace(**overrides)


