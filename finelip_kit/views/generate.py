"""Text-to-image with long prompts: a long CLIP text encoder in Stable Diffusion 1.5 and SDXL.

FineLIP and Long-CLIP show that a text encoder stretched to 248 positions plugs into diffusion
models and carries prompt details past token 77. Here that is a diffusers pipeline whose
tokenizer and text encoder(s) take 248 tokens, so ``pipe(prompt)`` embeds the whole prompt
(positive and negative) — nothing is cut at 77::

    from finelip_kit.generate import long_prompt_pipeline
    pipe = long_prompt_pipeline("stable-diffusion-v1-5/stable-diffusion-v1-5", "exports/longclip-L-text")
    image = pipe(long_prompt).images[0]

``text_encoder`` is a folder written by ``finelip export --what text`` (or
``export_text_encoder``), a FineLIP model, or a transformers ``CLIPTextModel``. For SDXL,
``long_prompt_pipeline_xl`` uses it as encoder 1 and stretches encoder 2 (OpenCLIP bigG)
training-free with the same knowledge-preserving rule.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..math.positional import stretch_position_embedding


# ----------------------------------------------------------------------------- encoders
def stretch_text_encoder(encoder: nn.Module, context_length: int = 248, mode: str = "kps", keep: int = 20) -> nn.Module:
    """Stretch a transformers CLIP text encoder's position table in place (training-free).

    ``mode`` and ``keep`` as in ``stretch_position_embedding``: 77 → 248 with ``kps`` is
    Long-CLIP's table. An encoder that already has ``context_length`` positions is returned as is.
    """
    embeddings = text_embeddings(encoder)
    table = embeddings.position_embedding.weight.detach()
    if table.shape[0] == context_length:
        return encoder
    if table.shape[0] > context_length:
        raise ValueError(f"the encoder already has {table.shape[0]} positions, more than context_length={context_length}")
    stretched = stretch_position_embedding(table, context_length, keep=keep, mode=mode)
    position_embedding = nn.Embedding(context_length, table.shape[1], device=table.device, dtype=table.dtype)
    position_embedding.weight.data.copy_(stretched)
    embeddings.position_embedding = position_embedding
    embeddings.register_buffer("position_ids", torch.arange(context_length, device=table.device).expand((1, -1)),
                               persistent=False)
    encoder.config.max_position_embeddings = context_length
    return encoder


def text_embeddings(encoder: nn.Module) -> nn.Module:
    """The ``CLIPTextEmbeddings`` of a transformers CLIP text encoder, with or without projection."""
    inner = getattr(encoder, "text_model", encoder)
    if not hasattr(inner, "embeddings"):
        raise TypeError(f"expected a transformers CLIP text encoder, got {type(encoder).__name__}")
    return inner.embeddings


def load_long_text_encoder(source, encoder_class=None, torch_dtype: torch.dtype | None = None):
    """``(text_encoder, tokenizer)`` for a pipeline from an export folder, a FineLIP model or a
    ``(text_encoder, tokenizer)`` pair. ``encoder_class``: the pipeline's class (``CLIPTextModel``)."""
    from transformers import CLIPTextModel, CLIPTokenizer, PreTrainedModel

    from ..model.finelip import FineLIP
    from ..model.pretrained import export_text_encoder

    encoder_class = encoder_class or CLIPTextModel
    if isinstance(source, tuple):
        return source
    if isinstance(source, PreTrainedModel):
        raise ValueError("pass a transformers text encoder together with its tokenizer: (text_encoder, tokenizer)")
    if isinstance(source, FineLIP):
        with tempfile.TemporaryDirectory() as directory:
            export_text_encoder(source, directory)
            return load_long_text_encoder(directory, encoder_class, torch_dtype)
    directory = Path(source)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{source!s} is not a text-encoder export (no config.json); write one with "
                                f"`finelip export --from <model> --to <dir> --what text`")
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # an export carries text_projection, which CLIPTextModel does not use
    try:
        encoder = encoder_class.from_pretrained(str(directory), torch_dtype=torch_dtype)
    finally:
        logging.set_verbosity(verbosity)
    tokenizer = CLIPTokenizer.from_pretrained(str(directory))
    positions = encoder.config.max_position_embeddings
    if tokenizer.model_max_length != positions:
        tokenizer.model_max_length = positions  # the encoder's context decides
    return encoder, tokenizer


def _check_width(name: str, encoder, expected: nn.Module) -> None:
    width, wanted = encoder.config.hidden_size, expected.config.hidden_size
    if width != wanted:
        raise ValueError(f"{name} has width {width} but the pipeline's text encoder has {wanted}: the UNet's cross-"
                         f"attention expects {wanted} (an SD1.5 / SDXL encoder 1 is CLIP ViT-L/14, width 768)")


# ----------------------------------------------------------------------------- pipelines
def long_prompt_pipeline(base, text_encoder, torch_dtype: torch.dtype | None = None, **kwargs: Any):
    """A diffusers ``StableDiffusionPipeline`` from ``base`` (a local dir, a hub id or a pipeline)
    whose text encoder and tokenizer are the long ones (max length = the encoder's context)."""
    from diffusers import StableDiffusionPipeline

    original = base if isinstance(base, StableDiffusionPipeline) else StableDiffusionPipeline.from_pretrained(
        str(base), torch_dtype=torch_dtype, **kwargs)
    encoder, tokenizer = load_long_text_encoder(text_encoder, type(original.text_encoder), torch_dtype)
    _check_width("the long text encoder", encoder, original.text_encoder)
    encoder = encoder.to(device=original.text_encoder.device, dtype=original.text_encoder.dtype)
    return StableDiffusionPipeline(**{**original.components, "text_encoder": encoder, "tokenizer": tokenizer})


def long_prompt_pipeline_xl(base, text_encoder, context_length: int | None = None, mode: str = "kps", keep: int = 20,
                            torch_dtype: torch.dtype | None = None, **kwargs: Any):
    """A diffusers ``StableDiffusionXLPipeline``: encoder 1 = the long ViT-L/14 encoder, encoder 2
    (OpenCLIP bigG) stretched training-free to the same context (``mode``/``keep`` as Long-CLIP),
    so both take the same long prompt; the pooled embedding comes from encoder 2, as SDXL expects."""
    from diffusers import StableDiffusionXLPipeline

    original = base if isinstance(base, StableDiffusionXLPipeline) else StableDiffusionXLPipeline.from_pretrained(
        str(base), torch_dtype=torch_dtype, **kwargs)
    encoder, tokenizer = load_long_text_encoder(text_encoder, type(original.text_encoder), torch_dtype)
    _check_width("the long text encoder", encoder, original.text_encoder)
    encoder = encoder.to(device=original.text_encoder.device, dtype=original.text_encoder.dtype)
    length = context_length or encoder.config.max_position_embeddings
    if length != encoder.config.max_position_embeddings:
        raise ValueError(f"context_length={length} differs from the long encoder's {encoder.config.max_position_embeddings}"
                         f" positions; SDXL concatenates both encoders' tokens, so they need the same length")
    import copy

    encoder_2 = stretch_text_encoder(copy.deepcopy(original.text_encoder_2), length, mode=mode, keep=keep)
    tokenizer_2 = copy.deepcopy(original.tokenizer_2)
    tokenizer_2.model_max_length = length
    return StableDiffusionXLPipeline(**{**original.components, "text_encoder": encoder, "tokenizer": tokenizer,
                                        "text_encoder_2": encoder_2, "tokenizer_2": tokenizer_2})


# ----------------------------------------------------------------------------- offline: tiny pipelines
# Random tiny pipelines in the real diffusers formats (the tests' and the notebook's offline demo): they
# show every mechanism of the comparison (what 77 tokens drop, the long encoder in the pipeline, the
# scores) in seconds on a CPU, with noise for images.
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

    from ..model.finelip import FineLIP
    from ..model.pretrained import export_text_encoder

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


def offline_demo(folder: str | Path, xl: bool = False) -> tuple[Path, Path]:
    """``(base, encoder)`` folders of the offline demo under ``folder`` (built once): a tiny random SD1.5-style
    (``xl``: SDXL-style) pipeline whose 77-token encoder is the packaged tiny CLIP's text tower, and that
    tower stretched to 248 tokens (kps) as the long encoder."""
    from ..model.finelip import FineLIP
    from ..model.pretrained import export_text_encoder

    folder = Path(folder)
    base, encoder = folder / ("tiny-sdxl" if xl else "tiny-sd"), folder / "tiny-long-text"
    if not (base / "model_index.json").is_file():
        (tiny_sdxl_pipeline if xl else tiny_sd_pipeline)(base)
    if not (encoder / "config.json").is_file():
        long = FineLIP.from_pretrained("tiny-synthetic-clip", **{"text.context_length": 248, "text.stretch": "kps"})
        export_text_encoder(long, encoder)
    return base, encoder


def pipeline_sources(base: str, encoder: str, demo: bool | str = "auto", folder: str | Path = "figures/t2i/offline",
                     xl: bool = False):
    """What ``compare_long_prompts`` should load, checked up front: ``(base, encoder, note)``. A base that
    is neither a local folder nor in the Hugging Face cache cannot be had offline, nor can a missing
    encoder export; then ``demo="auto"`` (or True) uses ``offline_demo`` (``note`` says so and what to
    provide for the real comparison), ``demo=False`` raises naming what is missing."""
    missing = []
    if not _available(base, "model_index.json"):
        missing.append(f"the base pipeline {base!r} is neither a local folder nor in the Hugging Face cache "
                       f"(download it once online: huggingface-cli download {base}, or name a local SD1.5 folder)")
    if not Path(encoder).is_dir():
        missing.append(f"the long text encoder {encoder!r} does not exist (write it with `finelip export --from "
                       f"longclip-L.pt --to {encoder} --what text`)")
    if demo is True or (missing and demo == "auto"):
        tiny_base, tiny_encoder = offline_demo(folder, xl)
        why = "; ".join(missing) if missing else "demo=True"
        return str(tiny_base), str(tiny_encoder), (
            f"offline demo: {why}. Running tiny random pipelines instead ({tiny_base}, {tiny_encoder}): the images are "
            f"noise; the comparison's mechanics (what 77 tokens drop, the long encoder, the scores) are real")
    if missing:
        raise FileNotFoundError("; ".join(missing) + " — or set demo='auto' to see the comparison on tiny pipelines")
    return base, encoder, None


def _available(name: str, index_file: str) -> bool:
    """A local folder with ``index_file``, or a hub id whose ``index_file`` is in the local cache."""
    if Path(name).is_dir():
        return (Path(name) / index_file).is_file()
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, index_file)
    except Exception:  # not a valid repo id, no hub library: not available offline
        return False
    return isinstance(found, str)


# ----------------------------------------------------------------------------- comparison
EXAMPLE_PROMPTS = [
    "A cozy reading nook in a sunlit attic: a faded green velvet armchair beside a round window, a tall stack of "
    "old leather-bound books on the wooden floor, a sleeping orange tabby cat curled on a knitted blue blanket, "
    "dust motes floating in the warm afternoon light, a brass telescope pointing out of the window toward the sea, "
    "and on the small side table a chipped white teacup next to a red apple and a pair of round reading glasses.",
    "A bustling night market in the rain, seen from a low angle: rows of stalls with striped awnings, strings of "
    "warm paper lanterns, steam rising from a noodle stand where a cook in a white apron lifts noodles with long "
    "chopsticks, reflections of neon signs in the puddles, a child in a yellow raincoat holding a balloon shaped "
    "like a fish, and in the far background a purple tram crossing a stone bridge under a full moon.",
]


def load_prompts(path: str | Path | None) -> list[str]:
    """Prompts from a text file (one per line, blank lines skipped) or a JSON list; None: the examples."""
    import json

    if path is None:
        return list(EXAMPLE_PROMPTS)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist (one prompt per line, or a JSON list)")
    text = path.read_text(encoding="utf-8")
    prompts = json.loads(text) if path.suffix == ".json" else [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"{path} holds no prompts, or an entry that is not a non-empty string")
    return prompts

def split_at_context(prompt: str, tokenizer, context_length: int = 77) -> tuple[str, str]:
    """``(kept, dropped)``: the part of ``prompt`` a ``context_length``-token encoder reads (BOS and
    EOT take two positions) and the part it drops (``""`` if none)."""
    ids = tokenizer(prompt, truncation=False, add_special_tokens=False)["input_ids"]
    room = context_length - 2
    kept, dropped = ids[:room], ids[room:]
    return tokenizer.decode(kept).strip(), tokenizer.decode(dropped).strip() if dropped else ""


@dataclass
class Comparison:
    prompts: list[str]
    seeds: list[int]
    images: dict[tuple[int, int, str], Any]  # (prompt index, seed, "77 tokens" | "long") → PIL image
    kept: list[str]  # what the 77-token encoder reads of each prompt (as its tokenizer decodes it)
    dropped: list[str]  # what it drops
    scores: Any = None  # DataFrame: prompt, seed, pipeline, score against the full prompt (when scored)
    figure: Any = field(default=None, repr=False)


def compare_long_prompts(prompts: Sequence[str], base, long_encoder, seeds: Sequence[int] = (0,),
                         num_inference_steps: int = 30, guidance_scale: float = 7.5, height: int | None = None,
                         width: int | None = None, negative_prompt: str | None = None, score_with=None,
                         device: str | torch.device | None = None, xl: bool = False, **pipeline_kwargs: Any) -> Comparison:
    """The original 77-token pipeline and the long one on the same seeds, in an image grid with each
    prompt and the part the 77-token encoder drops highlighted; ``score_with`` (a FineLIP model)
    scores every image against its full prompt."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    pipeline_class = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    original = base if isinstance(base, pipeline_class) else pipeline_class.from_pretrained(str(base), **pipeline_kwargs)
    device = torch.device(device) if device else (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    original = original.to(device)
    long = (long_prompt_pipeline_xl if xl else long_prompt_pipeline)(original, long_encoder).to(device)
    original.set_progress_bar_config(disable=True)
    long.set_progress_bar_config(disable=True)
    images: dict[tuple[int, int, str], Any] = {}
    for p, prompt in enumerate(prompts):
        for seed in seeds:
            for name, pipe in (("77 tokens", original), ("long", long)):
                generator = torch.Generator(device="cpu").manual_seed(seed)
                images[(p, seed, name)] = pipe(prompt, negative_prompt=negative_prompt, num_inference_steps=num_inference_steps,
                                               guidance_scale=guidance_scale, height=height, width=width,
                                               generator=generator).images[0]
    kept, dropped = zip(*(split_at_context(prompt, original.tokenizer, original.tokenizer.model_max_length)
                          for prompt in prompts))
    comparison = Comparison(list(prompts), list(seeds), images, list(kept), list(dropped))
    if score_with is not None:
        comparison.scores = score_images(score_with, comparison)
    comparison.figure = plot_comparison(comparison)
    return comparison


@torch.no_grad()
def score_images(model, comparison: Comparison):
    """Cosine similarity (global embeddings) of every image with its full prompt, by the kit's model."""
    import pandas as pd
    import torch.nn.functional as F

    from ..data.transforms import clip_transform
    from ..evaluation import eval_mode
    from ..model.tokenizer import get_tokenizer

    device = next(model.parameters()).device
    transform = clip_transform(model.config.vision)
    tokenizer = get_tokenizer(context_length=model.context_length)
    rows = []
    with eval_mode(model):
        for (p, seed, name), image in comparison.images.items():
            tokens = tokenizer([comparison.prompts[p]]).to(device)
            text = F.normalize(model.encode_text(tokens.input_ids, tokens.attention_mask, fine=False).global_, dim=-1)
            picture = F.normalize(model.encode_image(transform(image)[None].to(device), fine=False).global_, dim=-1)
            rows.append({"prompt": p, "seed": seed, "pipeline": name, "score": float((text * picture).sum())})
    return pd.DataFrame(rows)


def plot_comparison(comparison: Comparison, wrap: int = 70, path: str | Path | None = None):
    """Rows: prompt × seed; columns: the 77-token pipeline, the long one; under each row the prompt,
    with the part the 77-token encoder drops in red."""
    import textwrap

    import matplotlib.pyplot as plt

    rows = [(p, seed) for p in range(len(comparison.prompts)) for seed in comparison.seeds]
    fig, axes = plt.subplots(len(rows), 2, figsize=(8, 5.2 * len(rows)), squeeze=False)
    for (p, seed), (left, right) in zip(rows, axes):
        for ax, name in ((left, "77 tokens"), (right, "long")):
            ax.imshow(comparison.images[(p, seed, name)])
            title = f"{name}, seed {seed}"
            if comparison.scores is not None:
                score = comparison.scores.query("prompt == @p and seed == @seed and pipeline == @name")["score"].item()
                title += f", score {score:.3f}"
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        kept, dropped = comparison.kept[p], comparison.dropped[p]
        left.text(0, -0.05, "\n".join(textwrap.wrap(kept, wrap)), transform=left.transAxes, fontsize=7, va="top")
        if dropped:
            lines = len(textwrap.wrap(kept, wrap))
            left.text(0, -0.07 - 0.045 * lines, "dropped at 77 tokens: " + "\n".join(textwrap.wrap(dropped, wrap)),
                      transform=left.transAxes, fontsize=7, va="top", color="#c62828")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig
