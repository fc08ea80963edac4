"""Slow, obvious reference implementations that the tests and benchmarks compare against."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clim_scores_loop(
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    text_mask: torch.Tensor | None = None,
    image_mask: torch.Tensor | None = None,
    slope: float = 0.1,
) -> torch.Tensor:
    """CLIM one caption at a time against every image, as the official FineLIP code computes it.

    Leaky ReLU before the max, as written in the paper; ``(i, t)`` scores.
    """
    images = F.normalize(image_tokens, dim=-1)
    texts = F.normalize(text_tokens, dim=-1)
    valid_regions = torch.ones(images.shape[:2], dtype=torch.bool) if image_mask is None else image_mask
    columns = []
    for t in range(texts.shape[0]):
        words = texts[t] if text_mask is None else texts[t][text_mask[t]]  # (b, d)
        sim = F.leaky_relu(torch.einsum("iad,bd->iab", images, words), slope)  # (images, regions, words)
        best_region = sim.masked_fill(~valid_regions[:, :, None], float("-inf")).max(dim=1).values  # (i, b)
        best_word = sim.max(dim=2).values  # (i, a)
        region_mean = (best_word * valid_regions).sum(1) / valid_regions.sum(1)
        columns.append(best_region.mean(1) + region_mean)
    return torch.stack(columns, dim=1)


def kps_stretch_longclip(table: torch.Tensor, keep: int = 20) -> torch.Tensor:
    """Long-CLIP's knowledge-preserving ratio-4 stretch, written row by row as in its release."""
    length, dim = table.shape
    new = torch.zeros(4 * length - 3 * keep, dim, dtype=table.dtype)
    for i in range(keep):
        new[i] = table[i]
    for i in range(length - 1 - keep):
        new[4 * i + keep] = table[i + keep]
        new[4 * i + 1 + keep] = 3 * table[i + keep] / 4 + 1 * table[i + 1 + keep] / 4
        new[4 * i + 2 + keep] = 2 * table[i + keep] / 4 + 2 * table[i + 1 + keep] / 4
        new[4 * i + 3 + keep] = 1 * table[i + keep] / 4 + 3 * table[i + 1 + keep] / 4
    last, step = table[length - 1], table[length - 1] - table[length - 2]
    for j in range(4):
        new[4 * length - 3 * keep - 4 + j] = last + j * step / 4
    return new


# ----------------------------------------------------------------------------- tiny diffusion pipelines
def _tiny_unet_and_vae(cross_attention_dim: int, **unet_extra):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=32, **unet_extra)
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=32)
    return unet, vae


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def _tiny_base_text_encoder(directory):
    """The packaged tiny CLIP's text tower at 77 tokens, as a transformers CLIPTextModel + tokenizer."""
    from transformers import CLIPTextModel, CLIPTokenizer

    from .model import FineLIP
    from .pretrained import export_text_encoder

    export_text_encoder(FineLIP.from_pretrained("tiny-synthetic-clip"), directory)
    return CLIPTextModel.from_pretrained(str(directory)), CLIPTokenizer.from_pretrained(str(directory))


def tiny_sd_pipeline(directory):
    """A tiny random Stable Diffusion 1.5-style pipeline saved to ``directory`` (64 px, 77-token
    text encoder: the packaged tiny CLIP's, width 96). Seconds for 2 steps on a CPU."""
    import tempfile

    from diffusers import StableDiffusionPipeline

    unet, vae = _tiny_unet_and_vae(cross_attention_dim=96)
    with tempfile.TemporaryDirectory() as scratch:
        encoder, tokenizer = _tiny_base_text_encoder(scratch)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=encoder, tokenizer=tokenizer, unet=unet, scheduler=_scheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(directory))
    return pipe


def tiny_sdxl_pipeline(directory):
    """A tiny random SDXL-style pipeline saved to ``directory``: encoder 1 the packaged tiny CLIP's
    text tower (width 96), encoder 2 a random CLIPTextModelWithProjection (width 32), both 77 tokens."""
    import tempfile

    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    unet, vae = _tiny_unet_and_vae(cross_attention_dim=96 + 32, addition_embed_type="text_time",
                                   addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 * 6 + 32,
                                   transformer_layers_per_block=1)
    with tempfile.TemporaryDirectory() as scratch:
        encoder, tokenizer = _tiny_base_text_encoder(scratch)
    torch.manual_seed(1)
    encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, hidden_act="gelu", bos_token_id=49406, eos_token_id=49407,
        pad_token_id=49407))
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=encoder, text_encoder_2=encoder_2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=_scheduler())
    pipe.save_pretrained(str(directory))
    return pipe
