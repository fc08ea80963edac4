"""Bounds on what one input may cost before it is decoded or tokenised, in one place.

A 400-byte PNG can declare 1 x 100,000 pixels (resized for a 64-pixel tower that is 64 x 6.4 million:
2.5 GB), and a 50 MB caption takes a minute and gigabytes to tokenise. Every image's header and every
caption is checked against these limits first; a record over one is a defect like any other (named
when loading raises, counted when it skips). Each limit is read from the environment when it is
checked, so a notebook, a grid point and the DataLoader's workers all see the same value:

    FINELIP_MAX_IMAGE_PIXELS   width x height, default 89,478,485 (PIL's own warning threshold)
    FINELIP_MAX_ASPECT_RATIO   longer side / shorter side, default 20
    FINELIP_MAX_CAPTION_CHARS  characters of one caption, default 100,000 (248 tokens are ~1,500)
"""

from __future__ import annotations

import os

DEFAULTS = {"FINELIP_MAX_IMAGE_PIXELS": 89_478_485, "FINELIP_MAX_ASPECT_RATIO": 20.0,
            "FINELIP_MAX_CAPTION_CHARS": 100_000}


def limit(name: str) -> float:
    """The limit ``name`` (one of ``DEFAULTS``): the environment's value, else the default."""
    text = os.environ.get(name)
    if text is None:
        return DEFAULTS[name]
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number; unset it or give a positive number") from None
    if not value > 0:
        raise ValueError(f"{name}={text!r} must be > 0")
    return value


def image_size_problem(width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` (read from its header) is refused, or None."""
    pixels, longest, shortest = width * height, max(width, height), min(width, height)
    if shortest < 1:
        return f"{width} x {height} pixels: an empty image"
    if pixels > limit("FINELIP_MAX_IMAGE_PIXELS"):
        return (f"{width} x {height} = {pixels:,} pixels, more than the {int(limit('FINELIP_MAX_IMAGE_PIXELS')):,} "
                f"allowed (FINELIP_MAX_IMAGE_PIXELS)")
    if longest / shortest > limit("FINELIP_MAX_ASPECT_RATIO"):
        return (f"{width} x {height} pixels: aspect ratio {longest / shortest:,.0f}, more than the "
                f"{limit('FINELIP_MAX_ASPECT_RATIO'):g} allowed (FINELIP_MAX_ASPECT_RATIO); resized for the tower "
                f"it would take {longest / shortest * 224 * 224 * 3 / 2**30:,.1f} GiB or more")
    return None


def caption_problem(caption: str) -> str | None:
    """Why a caption is refused for its length, or None."""
    maximum = int(limit("FINELIP_MAX_CAPTION_CHARS"))
    if len(caption) > maximum:
        return (f"caption of {len(caption):,} characters, more than the {maximum:,} allowed "
                f"(FINELIP_MAX_CAPTION_CHARS; a 248-token caption is about 1,500 characters)")
    return None
