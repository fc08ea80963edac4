"""Long-context CLIP tokenizer that works offline.

``get_tokenizer()`` with no source builds a transformers ``CLIPTokenizer`` from the CLIP
BPE vocabulary that ships inside the installed ``open_clip_torch`` wheel, so nothing is
downloaded. Texts are cleaned the way CLIP/open_clip clean them (ftfy, HTML unescape
twice, whitespace collapse, lower case), then split into words with open_clip's pattern and
not composed again (NFC), so ids match open_clip's tokenizer exactly. One deliberate difference: open_clip turns a literal
``<end_of_text>`` in a text into its special id; here it stays text.

Every sequence is ``[BOS] tokens [EOT] pad...``; a text longer than the context keeps
its EOT as the last token (``[BOS] first n-2 tokens [EOT]``), so EOT pooling never
silently reads the BOS state. The batch reports how many texts were truncated.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import ftfy
import torch

from ..limits import caption_problem

BOS_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
_NUM_MERGES = 49152 - 256 - 2  # CLIP's vocabulary: 49408 entries
_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
_UNBOUNDED = 10**9  # we truncate ourselves; keeps transformers' length warning quiet


def clean_text(text: str) -> str:
    """CLIP's text cleaning: fix mojibake, unescape HTML twice, collapse whitespace, lower case."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()


@lru_cache(maxsize=1)
def _bundled_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocab and merges, read from the BPE file inside the open_clip package."""
    # Locate the file without importing open_clip (its import pulls in torch and timm: seconds).
    spec = importlib.util.find_spec("open_clip")
    path = Path(next(iter(spec.submodule_search_locations or []), "")) / _BPE_FILE if spec else None
    if path is None or not path.is_file():
        raise RuntimeError(
            f"the offline CLIP tokenizer reads its vocabulary ({_BPE_FILE}) from the open_clip_torch package, "
            "which is not installed; `pip install open_clip_torch`, or pass a tokenizer directory as source"
        )
    raw = path.read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")[1 : _NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS_TOKEN, EOT_TOKEN]
    return {token: index for index, token in enumerate(tokens)}, merges


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte → printable-unicode table (the order defines the first 256 ids)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def _bundled_hf_tokenizer():
    from transformers import CLIPTokenizer

    vocab, merges = _bundled_vocab()
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=BOS_TOKEN,
        eos_token=EOT_TOKEN,
        unk_token=EOT_TOKEN,
        pad_token=EOT_TOKEN,
    )


@dataclass
class TokenizedText:
    """A padded batch: ``input_ids``/``attention_mask`` ``(b, n)``, ``lengths`` ``(b,)`` with BOS/EOT."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: torch.Tensor
    truncated: torch.Tensor  # (b,) bool: this text lost tokens to the context length

    @property
    def num_truncated(self) -> int:
        return int(self.truncated.sum())

    def to(self, device: torch.device | str) -> "TokenizedText":
        return TokenizedText(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.lengths, self.truncated)))


class CLIPTextTokenizer:
    """Tokenize for a CLIP text tower of ``context_length`` positions.

    Wraps any transformers tokenizer of the CLIP family (``.hf``); special tokens are
    added here, so truncation always keeps the EOT.
    """

    def __init__(self, hf_tokenizer, context_length: int = 248, clean: bool = True):
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2 (BOS and EOT), got {context_length}")
        self.hf = hf_tokenizer
        self.hf.model_max_length = _UNBOUNDED
        self.context_length = context_length
        self.clean = clean
        self.bos_token_id = hf_tokenizer.bos_token_id
        self.eos_token_id = hf_tokenizer.eos_token_id
        pad = hf_tokenizer.pad_token_id
        self.pad_token_id = self.eos_token_id if pad is None else pad
        self._original_steps = _as_open_clip(hf_tokenizer) if clean else None
        if self.bos_token_id is None or self.eos_token_id is None:
            raise ValueError("the tokenizer must define bos_token_id and eos_token_id (CLIP's <|startoftext|>, <|endoftext|>)")

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without special tokens, one list per text."""
        texts = _as_list(texts)
        for number, text in enumerate(texts):
            too_long = caption_problem(text) if isinstance(text, str) else None
            if too_long:  # before cleaning and BPE: their cost grows with the text
                raise ValueError(f"text {number} of {len(texts)} is refused: {too_long}")
        if self.clean:
            texts = [clean_text(t) for t in texts]
        # split_special_tokens: a literal "<|endoftext|>" in a caption is text, as in open_clip. open_clip's
        # own special strings differ ("<end_of_text>"): it turns a literal one into its special id, the kit
        # keeps it as text (a caption cannot end itself early).
        return self.hf(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None, padding: str = "longest"
    ) -> TokenizedText:
        """Tokenize to a padded batch. ``padding``: ``"longest"`` (in the batch) or ``"max_length"``."""
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        length = context_length or self.context_length
        if length < 2:
            raise ValueError(f"context_length must be >= 2 (BOS and EOT), got {length}")
        pieces = self.encode(texts)
        rows = [[self.bos_token_id, *ids[: length - 2], self.eos_token_id] for ids in pieces]
        width = length if padding == "max_length" else max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention_mask[i, : len(row)] = 1
        lengths = attention_mask.sum(-1)
        truncated = torch.tensor([len(ids) + 2 > length for ids in pieces])
        return TokenizedText(input_ids, attention_mask, lengths, truncated)

    def count_tokens(self, texts: str | Sequence[str]) -> list[int]:
        """Untruncated length of each text in tokens, BOS and EOT included."""
        return [len(ids) + 2 for ids in self.encode(texts)]

    def decode_tokens(self, ids: Sequence[int]) -> list[str]:
        """Each id as its text piece (BPE end-of-word markers removed), for labelling plots."""
        return [self.hf.decode([int(i)]).strip() for i in ids]

    def words(self, text: str, context_length: int | None = None) -> tuple[list[str], list[int]]:
        """The words of ``text`` that fit the context (BPE pieces merged at CLIP's end-of-word
        markers) and, for each kept token after BOS, the index of its word.

        >>> get_tokenizer().words("photosynthesising xylophones")
        (['photosynthesising', 'xylophones'], [0, 0, 0, 1, 1, 1])
        """
        length = context_length or self.context_length
        ids = self.encode([text])[0][: length - 2]
        pieces = self.hf.convert_ids_to_tokens(ids)
        words, token_word, current = [], [], []
        for token_id, piece in zip(ids, pieces):
            current.append(token_id)
            token_word.append(len(words))
            if piece.endswith("</w>"):
                words.append(self.hf.decode(current).strip())
                current = []
        if current:
            words.append(self.hf.decode(current).strip())
        return words, token_word

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the transformers tokenizer files with ``model_max_length`` = the context length."""
        self.hf.model_max_length = self.context_length
        backend = self.hf.backend_tokenizer if self._original_steps is not None else None
        ours = (backend.normalizer, backend.pre_tokenizer) if backend is not None else None
        if backend is not None:  # a saved tokenizer is used without the kit's cleaning: save CLIP's own steps
            backend.normalizer, backend.pre_tokenizer = self._original_steps
        try:
            self.hf.save_pretrained(str(directory))
        finally:
            self.hf.model_max_length = _UNBOUNDED
            if backend is not None:
                backend.normalizer, backend.pre_tokenizer = ours


# open_clip's word pattern without its special strings: CLIP's transformers tokenizer also matches
# "<|startoftext|>" / "<|endoftext|>" as whole words, which splits "<|endoftext|>!" differently.
_OPEN_CLIP_WORDS = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"


def _as_open_clip(hf_tokenizer):
    """Make a fast CLIP tokenizer split and normalise text exactly as open_clip does after the
    kit's cleaning: no NFC (``clean_text`` ran ftfy, which already composes; composing again only
    changes what ``html.unescape`` decoded after it — ``<b>..</b> cafe&#769;`` keeps its combining
    accent in open_clip), and open_clip's word pattern. Returns the original (normalizer,
    pre-tokenizer) to restore when saving, or None when the tokenizer is not of that kind."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    normalizer, splitter = getattr(backend, "normalizer", None), getattr(backend, "pre_tokenizer", None)
    if normalizer is None or splitter is None or "startoftext" not in str(splitter):
        return None
    parts = [normalizer[i] for i in range(len(normalizer))] if isinstance(normalizer, normalizers.Sequence) else [normalizer]
    backend.normalizer = normalizers.Sequence([part for part in parts if not isinstance(part, normalizers.NFC)])
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_OPEN_CLIP_WORDS), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    return normalizer, splitter


def get_tokenizer(source: str | Path | None = None, context_length: int = 248) -> CLIPTextTokenizer:
    """The kit's tokenizer: from ``source`` (a local dir or hub id) or, offline, CLIP's own BPE."""
    if source is None:
        hf = _bundled_hf_tokenizer()
    else:
        from transformers import AutoTokenizer

        try:
            hf = AutoTokenizer.from_pretrained(str(source))
        except (OSError, ValueError) as error:
            raise OSError(
                f"could not load a tokenizer from {str(source)!r}: {error}. Pass a directory holding "
                f"tokenizer files (or a hub id when online), or source=None for the bundled CLIP vocabulary"
            ) from error
    return CLIPTextTokenizer(hf, context_length=context_length)


def _as_list(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    bad = [(i, type(t).__name__) for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; items {bad[:5]} are not")
    return texts
