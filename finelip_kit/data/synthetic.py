"""Synthetic long-caption scenes: the kit's embedded benchmark (nothing to download).

Each image is a grid of cells, some holding an object (shape, colour, size) over a
noisy background. Its caption describes every object and a few spatial relations in
varied wording; most captions are longer than CLIP's 77 tokens.

**Hard-negative groups.** Images come in groups of ``group_size`` that share a base
scene and the caption's wording, and differ only in ``differing_objects`` objects whose
sentences start after ``75 + late_offset`` caption tokens. The 77-token truncations of a
group's captions are therefore identical: a model that reads 77 tokens can do no better
than chance inside a group, a long-context model can.

**Binding groups** (``group_kind="binding"``, with ``differing_objects=2``): the members
differ only by *swapping* attributes (colour, shape, size) between the two late objects: every
member's caption has the same bag of words, and only which attribute goes with which object —
and where — tells them apart. Within-group accuracy on them is the kit's compositionality probe
(``eval.binding``).

Every sample is a pure function of ``(seed, split, index)``: the dataset is ready at
once, and identical in every worker and on every machine. Splits draw their scenes from
disjoint random streams.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..schema import Check, at_least, choice, setting, validate

SPLITS = ("train", "val", "test")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 47),
    "green": (60, 180, 75),
    "blue": (40, 90, 220),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 200),
    "orange": (245, 130, 30),
    "cyan": (60, 210, 220),
    "pink": (245, 120, 190),
    "white": (235, 235, 235),
}
SHAPES = ("square", "circle", "triangle", "diamond", "cross", "ring", "bar")
SIZES = {"small": 0.55, "large": 0.95}  # radius as a fraction of half the cell
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 20),
    "grey": (70, 70, 75),
    "navy": (20, 25, 60),
    "brown": (60, 40, 25),
}
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth")
OBJECT_TEMPLATES = (
    "There is a {size} {colour} {shape} in {pos}.",
    "A {size} {colour} {shape} sits in {pos}.",
    "In {pos} we see a {size} {colour} {shape}.",
    "{Pos} holds a {size} {colour} {shape}.",
)
POSITION_STYLES = (
    "row {row}, column {col}",
    "the {row_ord} row, {col_ord} column",
)
RELATION_TEMPLATES = (
    "The {a} is {relation} the {b}.",
    "Look for the {a} {relation} the {b}.",
)
GROUP_KINDS = ("replace", "binding")
DETAIL_POSITIONS = ("late", "early", "anywhere")  # where a caption's differing sentences sit
ATTRIBUTES = ("colour", "shape", "size")
# CLIP's 77-token context keeps BOS + 75 text tokens + EOT.
CLIP_TEXT_TOKENS = 75


@dataclass
class SyntheticConfig:
    """Every difficulty knob of the benchmark, in one place."""

    image_size: int = setting(64, check=at_least(8))
    grid_size: int = setting(4, check=Check(lambda v: 1 <= v <= 12, "in [1, 12]"))  # cells per side; with 64 px and patch 8, an object covers 2x2 patches
    min_objects: int = 7
    max_objects: int = 10
    colours: tuple[str, ...] = tuple(COLOURS)
    shapes: tuple[str, ...] = SHAPES
    sizes: tuple[str, ...] = tuple(SIZES)
    relation_sentences: int = setting(2, check=at_least(0))
    group_size: int = setting(4, check=at_least(1))
    differing_objects: int = 1  # objects that change inside a group (described late)
    # "replace": the late objects are redrawn; "binding": two late objects swap attributes
    group_kind: str = setting("replace", check=choice(GROUP_KINDS))
    late_offset: int = setting(0, check=at_least(0))  # the differing sentences start after 75 + late_offset caption tokens
    # the shortcut DeBias-CLIP describes: a first sentence that summarises the scene (False: none), naming this
    # many of the shared objects ("..., among them a large red square and a small blue ring.")
    summary: bool = True
    summary_objects: int = setting(0, check=at_least(0))
    # "late": after 75 + late_offset tokens (the 77-token cut loses them); "early": right after the summary;
    # "anywhere": at a random place among the shared sentences
    detail_position: str = setting("late", check=choice(DETAIL_POSITIONS))
    noise: float = setting(6.0, check=at_least(0))  # pixel noise std (0-255 scale)
    colour_jitter: float = setting(10.0, check=at_least(0))  # per-object colour std
    seed: int = 0
    sizes_per_split: dict[str, int] = setting(factory=lambda: {"train": 60_000, "val": 2_000, "test": 2_000})

    def __post_init__(self) -> None:
        self.colours, self.shapes, self.sizes = tuple(self.colours), tuple(self.shapes), tuple(self.sizes)
        validate(self)

    def relations(self):
        checks = [
            (self.image_size % self.grid_size == 0,
             f"image_size ({self.image_size}) must be a multiple of grid_size ({self.grid_size})"),
            (1 <= self.min_objects <= self.max_objects <= self.grid_size**2,
             f"need 1 <= min_objects <= max_objects <= grid_size**2 ({self.grid_size**2}), "
             f"got {self.min_objects}, {self.max_objects}"),
            (set(self.colours) <= set(COLOURS) and len(self.colours) >= 2,
             f"colours must be >= 2 of {sorted(COLOURS)}, got {list(self.colours)}"),
            (set(self.shapes) <= set(SHAPES) and len(self.shapes) >= 2, f"shapes must be >= 2 of {SHAPES}, got {list(self.shapes)}"),
            (set(self.sizes) <= set(SIZES) and len(self.sizes) >= 1, f"sizes must be among {sorted(SIZES)}, got {list(self.sizes)}"),
            (0 <= self.differing_objects < self.min_objects,
             f"differing_objects must be in [0, min_objects), got {self.differing_objects}"),
            (self.group_size == 1 or self.differing_objects >= 1, "group_size > 1 needs differing_objects >= 1"),
            (set(self.sizes_per_split) <= set(SPLITS), f"sizes_per_split keys must be among {SPLITS}"),
        ]
        if self.group_kind == "binding":
            checks.append((self.group_size == 1 or self.differing_objects == 2,
                           f"binding groups swap attributes between two objects: set differing_objects=2 "
                           f"(got {self.differing_objects})"))
            variants = 2 ** len(self.swappable())
            hint = "use two sizes or fewer members"
        else:
            variants = (len(self.colours) * len(self.shapes) * len(self.sizes)) ** self.differing_objects
            hint = "add colours/shapes or differing_objects"
        checks.append((variants >= self.group_size,
                       f"only {variants} variants of the differing objects exist for group_size {self.group_size}; {hint}"))
        return checks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def swappable(self) -> tuple[str, ...]:
        """The attributes a binding group can swap: those with two or more values."""
        return tuple(a for a in ATTRIBUTES if len(getattr(self, a + "s")) >= 2)


@dataclass
class SceneObject:
    row: int
    col: int
    shape: str
    colour: str
    size: str

    def name(self, with_size: bool = False) -> str:
        return f"{self.size} {self.colour} {self.shape}" if with_size else f"{self.colour} {self.shape}"


class SyntheticScenes:
    """``len`` pairs of one split; ``scenes[i]`` → a record dict.

    Record: ``image`` (PIL RGB), ``caption``, ``sentences`` (the caption's, as generated: what
    ``data.captions.split_sentences`` finds in it), ``short_caption`` (the first sentence),
    ``alt_caption`` (1-3 salient objects, under 20 tokens), ``image_id`` (= index),
    ``group`` and ``member`` (the hard-negative group and the position in it),
    ``late_token`` (caption token where the group's differing details start).
    """

    def __init__(self, config: SyntheticConfig | None = None, split: str = "train", size: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.config = config or SyntheticConfig()
        self.split = split
        n = self.config.sizes_per_split.get(split, 0) if size is None else size
        if n < 1:
            raise ValueError(f"split {split!r} has size {n}; give size= or set sizes_per_split[{split!r}]")
        self.size = n
        self._counter = _token_counter()

    def __len__(self) -> int:
        return self.size

    @property
    def report(self):
        """What the load kept and skipped, as for every source (``load_pairs``): generated, nothing is skipped."""
        from .pairs import LoadReport

        return LoadReport(loaded=self.size)

    def __repr__(self) -> str:
        return (f"SyntheticScenes(split={self.split!r}, {self.size} pairs in groups of {self.config.group_size}, "
                f"seed {self.config.seed})")

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} {self.split} scenes")
        group, member = divmod(index, self.config.group_size)
        scene = self._group(group)
        objects = scene["members"][member]
        # One render stream per group: members share every pixel but the differing objects' cells.
        render_rng = _rng(self.config.seed, self.split, group, 1)
        return {
            "image": self._render(objects, scene["background"], render_rng),
            "caption": scene["captions"][member],
            "sentences": list(scene["member_sentences"][member]),  # the caption's sentences, as generated
            "short_caption": (scene["sentences"] or scene["member_sentences"][member])[0],
            "alt_caption": _alt_caption(objects, _rng(self.config.seed, self.split, group, 2 + member)),
            "image_id": index,
            "group": group,
            "member": member,
            "late_token": scene["late_token"],
        }

    def objects(self, index: int) -> list[SceneObject]:
        """The objects drawn in image ``index`` (row, column, shape, colour, size)."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} {self.split} scenes")
        group, member = divmod(index, self.config.group_size)
        return list(self._group(group)["members"][member])

    def groups(self) -> list[int]:
        """The hard-negative group of every index (what ``TrainConfig(group_batches=True)`` batches by)."""
        return [i // self.config.group_size for i in range(self.size)]

    def records(self, indices=None):
        """Iterate over records (all, or ``indices``)."""
        for i in range(self.size) if indices is None else indices:
            yield self[i]

    # ------------------------------------------------------------------ scenes and captions
    @lru_cache(maxsize=4096)
    def _group(self, group: int) -> dict[str, Any]:
        cfg = self.config
        rng = _rng(cfg.seed, self.split, group, 0)
        n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        cells = rng.choice(cfg.grid_size**2, size=n_objects, replace=False)
        base = [self._random_object(rng, int(c) // cfg.grid_size, int(c) % cfg.grid_size) for c in cells]
        n_diff = cfg.differing_objects if cfg.group_size > 1 else 0
        shared, late = base[: n_objects - n_diff], base[n_objects - n_diff :]
        members = [shared + late]
        seen = {tuple((o.shape, o.colour, o.size) for o in late)}
        if cfg.group_kind == "binding" and n_diff:
            late[1] = self._unlike(late[0], late[1], rng)
            members = [shared + variant for variant in _swaps(late[0], late[1], cfg, rng)]
        while len(members) < cfg.group_size:
            variant = [self._random_object(rng, o.row, o.col) for o in late]
            key = tuple((o.shape, o.colour, o.size) for o in variant)
            if key not in seen:
                seen.add(key)
                members.append(shared + variant)
        background = str(rng.choice(list(BACKGROUNDS)))
        position_style = int(rng.integers(len(POSITION_STYLES)))
        object_templates = rng.integers(len(OBJECT_TEMPLATES), size=n_objects)
        intro = f"A {background} canvas with {_count(n_objects)} shapes on a {cfg.grid_size} by {cfg.grid_size} grid."
        if cfg.summary_objects:  # a more informative summary: it names some shared objects (no draw: the first ones)
            named = [f"a {o.name(with_size=True)}" for o in shared[: cfg.summary_objects]]
            intro = intro[:-1] + ", among them " + (" and ".join(named) if len(named) < 3 else
                                                    ", ".join(named[:-1]) + " and " + named[-1]) + "."
        shared_sentences = [
            _object_sentence(o, OBJECT_TEMPLATES[t], position_style) for o, t in zip(shared, object_templates)
        ]
        shared_sentences += [_relation_sentence(shared, rng) for _ in range(cfg.relation_sentences) if len(shared) >= 2]
        order = rng.permutation(len(shared_sentences))
        prefix, rest = ([intro] if cfg.summary else []), [shared_sentences[i] for i in order]
        threshold = CLIP_TEXT_TOKENS + cfg.late_offset
        if cfg.detail_position == "anywhere" and n_diff:  # its own stream: the other draws stay as they were
            at = int(_rng(cfg.seed, self.split, group, DETAIL_STREAM).integers(len(rest) + 1))
            prefix, rest = prefix + rest[:at], rest[at:]
        while cfg.detail_position == "late" and sum(self._counter(s) for s in prefix) < threshold and n_diff:
            if rest:
                prefix.append(rest.pop(0))
            elif len(shared) >= 2:
                prefix.append(_relation_sentence(shared, rng))  # filler: more relations between shared objects
            else:
                raise ValueError(
                    f"scenes with {n_objects} objects are too short to put the differing details after token "
                    f"{threshold}; raise min_objects or relation_sentences, or lower late_offset"
                )
        late_templates = object_templates[n_objects - n_diff :]
        captions, sentences = [], []
        for objects in members:
            late_sentences = [
                _object_sentence(o, OBJECT_TEMPLATES[t], position_style)
                for o, t in zip(objects[len(shared) :], late_templates)
            ]
            sentences.append(prefix + late_sentences + rest)
            captions.append(" ".join(sentences[-1]))
        late_token = sum(self._counter(s) for s in prefix) if n_diff else None
        return dict(members=members, background=background, captions=captions, sentences=prefix + rest,
                    member_sentences=sentences, late_token=late_token)

    def _random_object(self, rng: np.random.Generator, row: int, col: int) -> SceneObject:
        cfg = self.config
        return SceneObject(
            row=row,
            col=col,
            shape=str(rng.choice(cfg.shapes)),
            colour=str(rng.choice(cfg.colours)),
            size=str(rng.choice(cfg.sizes)),
        )

    def _unlike(self, first: SceneObject, other: SceneObject, rng: np.random.Generator) -> SceneObject:
        """``other`` redrawn in its cell until it differs from ``first`` in every swappable attribute."""
        while any(getattr(first, a) == getattr(other, a) for a in self.config.swappable()):
            other = self._random_object(rng, other.row, other.col)
        return other

    # ------------------------------------------------------------------ rendering
    def _render(self, objects: list[SceneObject], background: str, rng: np.random.Generator) -> Image.Image:
        cfg = self.config
        cell = cfg.image_size // cfg.grid_size
        canvas = np.empty((cfg.image_size, cfg.image_size, 3), dtype=np.float32)
        canvas[:] = BACKGROUNDS[background]
        for obj in objects:
            alpha = _shape_alpha(obj.shape, SIZES[obj.size], cell)[..., None]
            colour = np.asarray(COLOURS[obj.colour], dtype=np.float32) + rng.normal(0, cfg.colour_jitter, 3)
            y, x = obj.row * cell, obj.col * cell
            patch = canvas[y : y + cell, x : x + cell]
            patch[:] = patch * (1 - alpha) + colour * alpha
        if cfg.noise:
            canvas += rng.normal(0, cfg.noise, canvas.shape).astype(np.float32)
        return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")


def _swaps(first: SceneObject, second: SceneObject, cfg: SyntheticConfig, rng: np.random.Generator):
    """``group_size`` distinct [first, second] pairs: as drawn, then with a random choice of the other
    patterns of swapped attributes (each pattern a non-empty subset of ``cfg.swappable()``)."""
    import itertools

    names = cfg.swappable()
    patterns = [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]
    chosen = [patterns[int(i)] for i in rng.permutation(len(patterns))[: cfg.group_size - 1]]
    variants = [[first, second]]
    for swapped in chosen:
        a = {x: getattr(first, x) for x in ATTRIBUTES}
        b = {x: getattr(second, x) for x in ATTRIBUTES}
        for name in swapped:
            a[name], b[name] = b[name], a[name]
        variants.append([SceneObject(first.row, first.col, **a), SceneObject(second.row, second.col, **b)])
    return variants


DETAIL_STREAM = 1_000_003  # the random stream of detail_position="anywhere" (alt captions use 2 + member)


def _rng(seed: int, split: str, group: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split), group, stream])


def _count(n: int) -> str:
    """'seven'; digits past twelve ('fourteen' is not in the packaged base's vocabulary, digits are)."""
    return NUMBER_WORDS[n - 1] if n <= len(NUMBER_WORDS) else str(n)


def _position(obj: SceneObject, style: int) -> str:
    return POSITION_STYLES[style].format(
        row=NUMBER_WORDS[obj.row], col=NUMBER_WORDS[obj.col], row_ord=ORDINALS[obj.row], col_ord=ORDINALS[obj.col]
    )


def _object_sentence(obj: SceneObject, template: str, style: int) -> str:
    pos = _position(obj, style)
    return template.format(size=obj.size, colour=obj.colour, shape=obj.shape, pos=pos, Pos=pos[0].upper() + pos[1:])


def _relation_sentence(objects: list[SceneObject], rng: np.random.Generator) -> str:
    i, j = rng.choice(len(objects), size=2, replace=False)
    a, b = objects[int(i)], objects[int(j)]
    if a.row != b.row:
        relation = "above" if a.row < b.row else "below"
    else:
        relation = "to the left of" if a.col < b.col else "to the right of"
    template = RELATION_TEMPLATES[int(rng.integers(len(RELATION_TEMPLATES)))]
    return template.format(a=a.name(), b=b.name(), relation=relation)


def _alt_caption(objects: list[SceneObject], rng: np.random.Generator) -> str:
    """Alt-text-like: one to three salient objects (large ones first), e.g. 'a red circle and a blue bar'."""
    large_first = sorted(range(len(objects)), key=lambda k: (objects[k].size != "large", rng.random()))
    picked = [objects[k] for k in large_first[: int(rng.integers(1, 4))]]
    names = [f"a {o.name()}" for o in picked]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@lru_cache(maxsize=64)
def _shape_alpha(shape: str, radius: float, cell: int, supersample: int = 4) -> np.ndarray:
    """``(cell, cell)`` anti-aliased coverage of ``shape`` (radius in half-cell units)."""
    n = cell * supersample
    coords = (np.arange(n) + 0.5) / n * 2 - 1
    v, u = np.meshgrid(coords, coords, indexing="ij")  # v: down, u: right
    r = radius
    masks = {
        "square": np.maximum(abs(u), abs(v)) <= r * 0.85,
        "circle": u**2 + v**2 <= r**2,
        "triangle": (v <= r * 0.85) & (abs(u) <= (v + r * 0.85) / 2),
        "diamond": abs(u) + abs(v) <= r,
        "cross": ((abs(u) <= r / 3) & (abs(v) <= r)) | ((abs(v) <= r / 3) & (abs(u) <= r)),
        "ring": (u**2 + v**2 <= r**2) & (u**2 + v**2 >= (r * 0.55) ** 2),
        "bar": (abs(u) <= r) & (abs(v) <= r / 3),
    }
    mask = masks[shape].astype(np.float32)
    return mask.reshape(cell, supersample, cell, supersample).mean(axis=(1, 3))


# CLIP's pre-tokenizer: BPE runs inside each of these pieces, so token counts add up over them.
_PRE_TOKENS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


@lru_cache(maxsize=1)
def _token_counter():
    """Caption tokens of a (clean, lower-case) sentence with CLIP's real tokenizer, cached per word."""
    import regex

    from ..model.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()
    pattern = regex.compile(_PRE_TOKENS, regex.IGNORECASE)

    @lru_cache(maxsize=100_000)
    def word(piece: str) -> int:
        return len(tokenizer.encode([piece])[0])

    def count(sentence: str) -> int:
        return sum(word(piece) for piece in pattern.findall(sentence.lower()))

    return count


def vocabulary_token_ids() -> list[int]:
    """Every CLIP token id the generator can emit (all templates, attribute and number words)."""
    import re

    from ..model.tokenizer import get_tokenizer

    words = [*COLOURS, *SHAPES, *SIZES, *BACKGROUNDS, *NUMBER_WORDS, *ORDINALS, "to the left of", "to the right of",
             "above", "below", "a", "and", "by", "grid", "with", "shapes", "on", "canvas", ",", ".", *map(str, range(1, 13))]
    for template in (*OBJECT_TEMPLATES, *POSITION_STYLES, *RELATION_TEMPLATES):
        words.append(re.sub(r"\{\w+\}", " ", template))
    tokenizer = get_tokenizer()
    return sorted({token for piece in tokenizer.encode(words) for token in piece})


# ---------------------------------------------------------------------- other views of the data
def to_hf_dataset(scenes: SyntheticScenes):
    """The split as a ``datasets.Dataset`` (images as PIL via an ``Image()`` feature)."""
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "short_caption": datasets.Value("string"),
            "alt_caption": datasets.Value("string"),
            "image_id": datasets.Value("int64"),
            "group": datasets.Value("int64"),
            "member": datasets.Value("int64"),
            "late_token": datasets.Value("int64"),
        }
    )
    return datasets.Dataset.from_generator(lambda: scenes.records(), features=features)


def write_jsonl(scenes: SyntheticScenes, directory: str | Path) -> Path:
    """Write the split as ``<dir>/images/<id>.png`` + ``<dir>/<split>.jsonl``: the kit's own-data
    format, so ``load_pairs(dir / "<split>.jsonl")`` reads it like real data."""
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    manifest = directory / f"{scenes.split}.jsonl"
    with manifest.open("w") as out:
        for record in scenes.records():
            name = f"images/{scenes.split}_{record['image_id']:07d}.png"
            record["image"].save(directory / name)
            row = {k: v for k, v in record.items() if k != "image"}
            out.write(json.dumps({"image": name, **row}) + "\n")
    (directory / "synthetic_config.json").write_text(json.dumps(scenes.config.to_dict(), indent=2))
    return manifest


def show_samples(scenes: SyntheticScenes, indices=(0, 1, 2, 3), wrap: int = 60):
    """A matplotlib figure of a few samples with their captions (the late, differing part marked)."""
    import textwrap

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(indices), 2, figsize=(11, 2.6 * len(indices)), gridspec_kw={"width_ratios": [1, 3]})
    axes = np.atleast_2d(axes)
    for row, index in zip(axes, indices):
        record = scenes[index]
        row[0].imshow(record["image"])
        row[0].set_title(f"#{index}  group {record['group']}.{record['member']}", fontsize=9)
        row[0].axis("off")
        text = textwrap.fill(record["caption"], wrap)
        row[1].text(0, 1, text, va="top", fontsize=7.5, family="monospace")
        row[1].text(0, 0, f"short: {record['short_caption']}\nalt: {record['alt_caption']}", va="bottom", fontsize=7.5)
        row[1].axis("off")
    fig.tight_layout()
    return fig
