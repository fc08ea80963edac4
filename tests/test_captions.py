"""Captions as sentences (issue 32, first part): the splitter on captions in each loader's layout
and the synthetic generator's own sentences, DeBias-CLIP's augmentations (exact outputs on
constructed captions, determinism per seed, epoch and index, resume), and the probes' transforms."""

import random

import pytest
import torch

import fakes
from finelip_kit.data import load_pairs
from finelip_kit.data.captions import (CaptionAugment, augment_caption, augment_sentences, probe_caption, probe_sentences,
                                       split_sentences)

# one caption in the style of each source the kit loads (data/datasets.SOURCES), written for the test
CAPTIONS = {
    "coco": ("A man riding a wave on top of a surfboard", ["A man riding a wave on top of a surfboard"]),
    "flickr30k": ("Two young guys with shaggy hair look at their hands while hanging out in the yard.",
                  ["Two young guys with shaggy hair look at their hands while hanging out in the yard."]),
    "urban1k": ("The image shows a busy street in New York, e.g. Times Square at night. Yellow taxis wait at a "
                "light. A sign reads \"No. 7 Train.\" People cross the road",
                ["The image shows a busy street in New York, e.g. Times Square at night.", "Yellow taxis wait at a light.",
                 "A sign reads \"No. 7 Train.\"", "People cross the road"]),
    "docci": ("A close-up view of a 2.5 inch tall ceramic mug.  The mug is dark blue (approx. 3.5 cm wide)! Is it "
              "full? It is empty.",
              ["A close-up view of a 2.5 inch tall ceramic mug.", "The mug is dark blue (approx. 3.5 cm wide)!",
               "Is it full?", "It is empty."]),
    "dci": ("Mr. J. Smith stands beside St. Mary's church.\nHe wears a hat, a scarf, etc. The sky is grey...",
            ["Mr. J. Smith stands beside St. Mary's church.", "He wears a hat, a scarf, etc.", "The sky is grey..."]),
    "sharegpt4v": ("The image showcases a vintage car, i.e. a 1950s sedan, parked at 3 p.m. on a street. Its paint "
                   "is red vs. the white walls",
                   ["The image showcases a vintage car, i.e. a 1950s sedan, parked at 3 p.m. on a street.",
                    "Its paint is red vs. the white walls"]),
}


@pytest.mark.parametrize("source", sorted(CAPTIONS))
def test_the_splitter_on_captions_in_each_sources_layout(source):
    caption, sentences = CAPTIONS[source]
    assert split_sentences(caption) == sentences
    assert " ".join(split_sentences(caption)) == " ".join(caption.split())  # nothing lost but white space runs


LAYOUTS = {  # each layout the kit reads (tests/fakes.py), with the loader's own split
    "urban1k": lambda root: load_pairs("urban1k", root=fakes.urban1k(root), cache_dir=root / "cache"),
    "docci": lambda root: load_pairs("docci", split="test", root=fakes.docci(root)),
    "dci": lambda root: load_pairs("dci", split="all", root=fakes.dci(root)),
    "sharegpt4v": lambda root: load_pairs("sharegpt4v", split="eval", root=fakes.sharegpt4v(root, n=4)),
    "flickr30k": lambda root: load_pairs("flickr30k", split="test", root=fakes.karpathy(root, "flickr30k")),
    "coco-karpathy": lambda root: load_pairs("coco", split="test", root=fakes.karpathy(root, "coco")),
    "coco-val2017": lambda root: load_pairs("coco", split="val2017", root=fakes.coco_official(root)),
    "jsonl": lambda root: load_pairs(fakes.own_jsonl(root)),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_splitter_and_the_probes_on_captions_loaded_from_each_layout(tmp_path, monkeypatch, layout):
    """The captions of CAPTIONS, written in each real on-disk layout and read back by its loader: the
    splitter finds their sentences, and the probes transform them."""
    styled = [caption for caption, _ in CAPTIONS.values()]
    expected = {" ".join(caption.split()): sentences for caption, sentences in CAPTIONS.values()}
    monkeypatch.setattr(fakes, "CAPTIONS", styled)
    pairs = LAYOUTS[layout](tmp_path)
    assert len(pairs) > 0
    seen = 0
    for i in range(len(pairs)):
        caption = pairs[i]["caption"]
        sentences = split_sentences(caption)
        assert " ".join(sentences) == " ".join(caption.split())
        text = " ".join(caption.split())
        for known, known_sentences in expected.items():  # the fakes add text before (DCI's short caption) or after
            if text == known or (text.startswith(known + " ") and known[-1] in ".!?"):  # an unended caption runs on
                assert sentences[: len(known_sentences)] == known_sentences
                seen += 1
            elif text.endswith(" " + known):
                assert sentences[-len(known_sentences):] == known_sentences
                seen += 1
        assert probe_caption(caption, "first_k", 1) == sentences[0]
        assert probe_caption(caption, "move_first", 9) == " ".join(sentences[1:] + sentences[:1])  # nothing lost or added
    assert seen > 0


def test_the_splitter_on_edge_cases():
    assert split_sentences("") == [] and split_sentences("   ") == []
    assert split_sentences("no final period") == ["no final period"]
    assert split_sentences("Wow!!! Really?! ok.") == ["Wow!!!", "Really?!", "ok."]
    assert split_sentences("Pi is 3.14159. Next.") == ["Pi is 3.14159.", "Next."]
    assert split_sentences("apples, pears etc. and plums.") == ["apples, pears etc. and plums."]


def test_the_synthetic_generator_exposes_its_sentences_and_the_splitter_finds_exactly_them():
    from finelip_kit.data.synthetic import SyntheticConfig, SyntheticScenes

    scenes = SyntheticScenes(SyntheticConfig(), "val", size=24)
    for record in (scenes[i] for i in range(24)):
        assert split_sentences(record["caption"]) == record["sentences"]
        assert record["sentences"][0] == record["short_caption"] and record["sentences"][0].startswith("A ")


CAPTION = "S0 summary. S1 one. S2 two. S3 three."


def test_each_augmentation_alone_gives_the_draws_of_its_generator():
    sentences = split_sentences(CAPTION)
    # summary removal: one draw from random.Random(seed).random() decides
    for seed in range(6):
        dropped = random.Random(seed).random() < 0.5
        out = augment_caption(CAPTION, CaptionAugment(drop_summary=0.5), seed)
        assert out == (" ".join(sentences[1:]) if dropped else CAPTION), seed
    assert augment_caption(CAPTION, CaptionAugment(drop_summary=1.0), 3) == "S1 one. S2 two. S3 three."
    assert augment_caption("Only one.", CaptionAugment(drop_summary=1.0), 3) == "Only one."  # never emptied
    # sub-sampling: the kept sentences keep their order; an integer is at most that many, a fraction rounds
    rng = random.Random(4)
    rng.random()
    chosen = sorted(rng.sample(range(4), 2))
    assert augment_caption(CAPTION, CaptionAugment(keep_sentences=2), 4) == " ".join(sentences[i] for i in chosen)
    assert len(split_sentences(augment_caption(CAPTION, CaptionAugment(keep_sentences=0.5), 1))) == 2
    assert len(split_sentences(augment_caption(CAPTION, CaptionAugment(keep_sentences=0.01), 1))) == 1
    assert augment_caption(CAPTION, CaptionAugment(keep_sentences=9), 1) == CAPTION
    # padding: 0 ... n filler sentences first
    counts = set()
    for seed in range(40):
        out = augment_caption(CAPTION, CaptionAugment(pad_sentences=2, filler="Pad."), seed)
        pads = (len(out) - len(CAPTION)) // len("Pad. ")
        assert out == "Pad. " * pads + CAPTION
        counts.add(pads)
    assert counts == {0, 1, 2}
    assert augment_caption(CAPTION, CaptionAugment(), 5) == CAPTION  # nothing on: untouched


def test_augmentations_together_are_a_function_of_the_seed_only():
    augment = CaptionAugment(drop_summary=0.5, keep_sentences=2, pad_sentences=1)
    assert [augment_caption(CAPTION, augment, s) for s in range(20)] == [augment_caption(CAPTION, augment, s) for s in range(20)]
    assert len({augment_caption(CAPTION, augment, s) for s in range(20)}) > 3  # the seeds differ
    out = augment_sentences(["a.", "b.", "c."], augment, random.Random(0))
    rng = random.Random(0)
    drop = rng.random() < 0.5
    kept = ["b.", "c."] if drop else ["a.", "b.", "c."]
    picked = [kept[i] for i in sorted(rng.sample(range(len(kept)), 2))]
    assert out == ["This is a photo."] * rng.randint(0, 1) + picked


@pytest.mark.parametrize("bad, message", [({"drop_summary": 1.5}, "drop_summary"), ({"keep_sentences": 0}, "keep_sentences"),
                                          ({"keep_sentences": 1.5}, "keep_sentences"), ({"pad_sentences": -1}, "pad_sentences"),
                                          ({"filler": "  "}, "filler")])
def test_bad_augmentation_values_are_refused_naming_them(bad, message):
    with pytest.raises(ValueError, match=message):
        CaptionAugment(**bad)


def test_the_augmentations_are_run_settings_and_the_training_pairs_draw_them_per_epoch_and_index():
    from finelip_kit.data.epochs import sample_seed
    from finelip_kit.experiments.recipe import RunSpec, resolve
    from finelip_kit.train.config import caption_augment
    from finelip_kit.train.sampling import SeededPairs

    resolved = resolve(RunSpec(settings={"train.caption_drop_summary": 0.5, "train.caption_keep_sentences": 2,
                                         "train.caption_pad_sentences": 1}, preset="synthetic-tiny"))
    augment = caption_augment(resolved.train)
    assert augment == CaptionAugment(drop_summary=0.5, keep_sentences=2, pad_sentences=1)
    with pytest.raises(ValueError, match="caption_keep_sentences"):
        resolve(RunSpec(settings={"train.caption_keep_sentences": 0}, preset="synthetic-tiny"))
    records = [{"image": None, "caption": CAPTION, "image_id": i} for i in range(6)]
    pairs = SeededPairs(records, transform=lambda image: image, seed=7, captions=augment)
    first = [pairs[i]["caption"] for i in range(6)]
    assert first == [augment_caption(CAPTION, augment, sample_seed(7, 0, i)) for i in range(6)]
    pairs.epoch = 1
    second = [pairs[i]["caption"] for i in range(6)]
    assert second == [augment_caption(CAPTION, augment, sample_seed(7, 1, i)) for i in range(6)] and second != first
    resumed = SeededPairs(records, transform=lambda image: image, seed=7, captions=augment)  # a restarted run
    resumed.epoch = 1
    assert [resumed[i]["caption"] for i in range(6)] == second
    plain = SeededPairs(records, transform=lambda image: image, seed=7, captions=CaptionAugment())
    assert [plain[i]["caption"] for i in range(6)] == [CAPTION] * 6


def test_probe_transforms_on_a_constructed_caption():
    s = ["A.", "B.", "C.", "D."]
    assert probe_sentences(s, "move_first", 0) == s
    assert probe_sentences(s, "move_first", 2) == ["B.", "C.", "A.", "D."]
    assert probe_sentences(s, "move_first", 9) == ["B.", "C.", "D.", "A."]
    assert probe_sentences(s, "drop_first") == ["B.", "C.", "D."] and probe_sentences(["A."], "drop_first") == ["A."]
    assert probe_sentences(s, "prepend_filler", 2, filler="F.") == ["F.", "F.", *s]
    shuffled = s.copy()
    random.Random(3).shuffle(shuffled)
    assert probe_sentences(s, "shuffle", seed=3) == shuffled and sorted(shuffled) == s
    assert probe_sentences(s, "first_k", 2) == ["A.", "B."]
    assert probe_caption("One. Two. Three.", "first_k", 1) == "One."
    with pytest.raises(ValueError, match="probe must be one of"):
        probe_sentences(s, "reverse")
    with pytest.raises(ValueError, match="first_k keeps at least one"):
        probe_sentences(s, "first_k", 0)


def test_the_trainer_trains_on_the_augmented_captions(tmp_path):
    from finelip_kit.train import Trainer, TrainConfig
    from test_train import scenes, tiny

    data = scenes(8)
    trainer = Trainer(tiny(), data, TrainConfig(batch_size=4, steps=1, out_dir=str(tmp_path), progress=False,
                                                caption_drop_summary=1.0))
    for i in range(8):  # the summary sentence is gone from every training caption, the rest kept in order
        assert split_sentences(trainer.dataset[i]["caption"]) == data[i]["sentences"][1:]
    batch = trainer.collate([trainer.dataset[i] for i in range(4)])
    expected = trainer.tokenizer([" ".join(data[i]["sentences"][1:]) for i in range(4)], context_length=trainer.model.context_length)
    assert torch.equal(batch["input_ids"], expected.input_ids)


# ----------------------------------------------------------------------------- probes on a tiny model
def test_himo_is_the_mean_pearson_correlation_of_k_and_the_score_as_himo_clip_computes_it():
    from scipy.stats import pearsonr

    from finelip_kit.evaluation import himo

    rows = [[0.1, 0.2, 0.4, 0.3], [0.5, 0.4, 0.1, 0.0], [0.3, 0.3, 0.3, 0.3], [0.2, 0.9, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4],
            [0.7, 0.1, 0.2, 0.3]]
    counts = [4, 4, 4, 2, 3, 1]  # a flat score counts as 0 (HiMo-CLIP's get_himo.py); a one-sentence caption has no curve
    value, used = himo(rows, counts)
    expected = [pearsonr(range(1, 5), rows[0])[0], pearsonr(range(1, 5), rows[1])[0], 0.0, 1.0,
                pearsonr(range(1, 4), rows[4][:3])[0]]
    assert used == 5 and value == pytest.approx(sum(expected) / 5, rel=1e-12)
    assert himo([[1.0, 2.0, 3.0]], [3]) == (pytest.approx(1.0), 1)
    assert himo([[1.0, 1.0, 1.0]], [3]) == (0.0, 1)
    value, used = himo([[1.0, 2.0]], [1])
    assert used == 0 and value != value  # NaN, and caption_probes then records no score


def test_caption_probes_equal_retrieval_on_the_transformed_captions_and_a_direct_himo():
    import torch.nn.functional as F

    from finelip_kit.data.synthetic import SyntheticConfig, SyntheticScenes
    from finelip_kit.evaluation import caption_probes, evaluate_retrieval, himo
    from finelip_kit.model.tokenizer import get_tokenizer
    from test_train import tiny

    model = tiny()
    data = [dict(r) for r in SyntheticScenes(SyntheticConfig(image_size=32), "test", size=8)]
    found = caption_probes(model, data, modes=("global", "fine"), position=1, fillers=3, max_k=4)
    for probe, transform in (("move_first", lambda c: probe_caption(c, "move_first", 1)),
                             ("drop_first", lambda c: probe_caption(c, "drop_first")),
                             ("prepend_filler", lambda c: probe_caption(c, "prepend_filler", 3))):
        direct = evaluate_retrieval(model, [{**r, "caption": transform(r["caption"])} for r in data], modes=("global", "fine"))
        for mode in ("global", "fine"):
            for metric in ("t2i/R@1", "i2t/R@1", "group/t2i"):
                assert found[f"probe/{probe}/{mode}/{metric}"] == pytest.approx(direct.metrics[f"{mode}/{metric}"]), (probe, mode)
    shuffled = [{**r, "caption": probe_caption(r["caption"], "shuffle", seed=i)} for i, r in enumerate(data)]
    assert found["probe/shuffle/global/t2i/R@1"] == pytest.approx(evaluate_retrieval(model, shuffled, modes=("global",)).metrics[
        "global/t2i/R@1"])
    # the first-k curve and himo@4 from the model's embeddings directly (global: cosine of image and caption)
    tokenizer = get_tokenizer(context_length=model.context_length)
    from finelip_kit.data.transforms import clip_transform

    transform = clip_transform(model.config.vision)
    model.eval()
    with torch.no_grad():
        images = F.normalize(model.encode_image(torch.stack([transform(r["image"]) for r in data])).global_, dim=-1)
        rows = []
        for k in range(1, 5):
            batch = tokenizer([probe_caption(r["caption"], "first_k", k) for r in data], context_length=model.context_length)
            texts = F.normalize(model.encode_text(batch.input_ids, batch.attention_mask).global_, dim=-1)
            rows.append((images * texts).sum(-1).tolist())
            k_direct = evaluate_retrieval(model, [{**r, "caption": probe_caption(r["caption"], "first_k", k)} for r in data],
                                          modes=("global",))
            assert found[f"prefix/k{k}/global/t2i/R@1"] == pytest.approx(k_direct.metrics["global/t2i/R@1"])
    value, used = himo([list(r) for r in zip(*rows)], [len(r["sentences"]) for r in data])
    assert used == found["prefix/global/himo_captions"] == 8
    assert found["prefix/global/himo@4"] == pytest.approx(value, abs=1e-5)
    assert "prefix/fine/himo@4" in found and all(v == v for v in found.values())  # every number finite


def test_probes_are_eval_settings_and_reach_the_record(tmp_path):
    from finelip_kit.experiments.recipe import RunSpec, run

    result = run(RunSpec(settings={"train.steps": 2, "train.batch_size": 8, "eval.size": 8, "eval.reference": False,
                                   "eval.probes": ["drop_first", "first_k"], "eval.prefix_k": 3,
                                   "data.sizes_per_split": {"train": 16, "val": 8, "test": 8}},
                         preset="synthetic-tiny", name="probes", results_dir=str(tmp_path), progress=False))
    metrics = result.record["metrics"]
    assert {"probe/drop_first/global/t2i/R@1", "prefix/k3/global/t2i/R@1", "prefix/global/himo_captions"} <= set(metrics)
    assert not any(k.startswith("probe/shuffle") for k in metrics)
    assert result.record["settings"]["eval.probes"] == ["drop_first", "first_k"]


# ----------------------------------------------------------------------------- the synthetic shortcut knobs
def test_the_synthetic_summary_and_detail_position_knobs():
    from finelip_kit.data.synthetic import SyntheticConfig, SyntheticScenes
    from finelip_kit.experiments.settings import all_keys

    assert {"data.summary", "data.summary_objects", "data.detail_position"} <= set(all_keys())  # grid axes
    plain = SyntheticScenes(SyntheticConfig(), "test", size=16)
    knobs = {"none": SyntheticScenes(SyntheticConfig(summary=False), "test", size=16),
             "named": SyntheticScenes(SyntheticConfig(summary_objects=2), "test", size=16),
             "early": SyntheticScenes(SyntheticConfig(detail_position="early"), "test", size=16),
             "anywhere": SyntheticScenes(SyntheticConfig(detail_position="anywhere"), "test", size=16)}
    positions = set()
    for i in range(16):
        base, group = plain[i], plain._group(i // 4)
        summary = base["sentences"][0]
        assert summary.startswith("A ") and "canvas with" in summary
        assert not any("canvas with" in s for s in knobs["none"][i]["sentences"])  # no summary sentence at all
        assert knobs["none"][i]["short_caption"] == knobs["none"][i]["sentences"][0]
        named = knobs["named"][i]["sentences"][0]
        first_two = [f"a {o.name(with_size=True)}" for o in group["members"][0][:2]]
        assert named == summary[:-1] + f", among them {first_two[0]} and {first_two[1]}."
        early, differing = knobs["early"][i], set(base["sentences"]) - set(group["sentences"])
        assert set(early["sentences"][1:1 + len(differing)]) == differing  # right after the summary
        assert early["late_token"] == plain._counter(summary)
        anywhere = knobs["anywhere"][i]
        at = next(j for j, s in enumerate(anywhere["sentences"]) if s in differing)
        positions.add(at)
        assert anywhere["late_token"] == sum(plain._counter(s) for s in anywhere["sentences"][:at])
        for scenes in knobs.values():
            assert split_sentences(scenes[i]["caption"]) == scenes[i]["sentences"]
    assert len(positions) > 1  # "anywhere" varies between groups (and is the same on every read)
    assert [knobs["anywhere"][i]["caption"] for i in range(16)] == [
        SyntheticScenes(SyntheticConfig(detail_position="anywhere"), "test", size=16)[i]["caption"] for i in range(16)]
    with pytest.raises(ValueError, match="detail_position"):
        SyntheticConfig(detail_position="middle")


# ----------------------------------------------------------------------------- shuffling and two text inputs
def test_shuffling_permutes_the_kept_sentences_after_the_other_draws():
    augment = CaptionAugment(drop_summary=1.0, keep_sentences=2, shuffle=True)
    for seed in range(8):
        rng = random.Random(seed)
        rng.random()  # the summary draw
        kept = [["S1 one.", "S2 two.", "S3 three."][i] for i in sorted(rng.sample(range(3), 2))]
        rng.shuffle(kept)
        rng.randint(0, 0)  # the padding draw
        assert augment_caption(CAPTION, augment, seed) == " ".join(kept), seed
    outputs = {augment_caption(CAPTION, CaptionAugment(shuffle=True), s) for s in range(30)}
    assert all(sorted(split_sentences(o)) == sorted(split_sentences(CAPTION)) for o in outputs) and len(outputs) > 6
    # turning the shuffle on leaves the other augmentations' draws as they were
    unshuffled = CaptionAugment(drop_summary=0.5, keep_sentences=3)
    for seed in range(10):
        plain = split_sentences(augment_caption(CAPTION, unshuffled, seed))
        assert sorted(split_sentences(augment_caption(CAPTION, CaptionAugment(drop_summary=0.5, keep_sentences=3, shuffle=True),
                                                      seed))) == sorted(plain)


def test_two_text_inputs_train_on_the_full_caption_beside_the_augmented_one(tmp_path):
    from finelip_kit.train import Trainer, TrainConfig
    from test_train import scenes, tiny

    data = scenes(8)
    with pytest.raises(ValueError, match="no caption augmentation is on"):
        TrainConfig(caption_inputs="full+augmented")
    config = TrainConfig(batch_size=4, steps=1, out_dir=str(tmp_path), progress=False, caption_drop_summary=1.0,
                         caption_inputs="full+augmented", caption_augmented_weight=0.5)
    model = tiny(loss="global+fine")
    trainer = Trainer(model, data, config)
    items = [trainer.dataset[i] for i in range(4)]
    assert [r["caption"] for r in items] == [data[i]["caption"] for i in range(4)]  # the full caption kept ...
    assert [split_sentences(r["augmented_caption"]) for r in items] == [data[i]["sentences"][1:] for i in range(4)]  # ... and beside it
    batch = trainer.collate(items)
    expected = trainer.tokenizer([r["augmented_caption"] for r in items], context_length=model.context_length)
    assert torch.equal(batch["augmented_input_ids"], expected.input_ids)
    # the loss: each term on the full caption, plus the weight times the same term on the augmented one
    model.eval()
    with torch.no_grad():
        terms = model(batch, augmented_weight=0.5)
        image = model.encode_image(batch["images"])
        full = model.loss_terms(image, model.encode_text(batch["input_ids"], batch["attention_mask"]), batch["image_ids"])
        augmented = model.loss_terms(image, model.encode_text(batch["augmented_input_ids"], batch["augmented_attention_mask"]),
                                     batch["image_ids"])
    for name in ("global", "fine"):
        assert torch.equal(terms[name], full[name]) and torch.equal(terms[f"{name}_augmented"], augmented[name])
    torch.testing.assert_close(terms["loss"], full["loss"] + 0.5 * augmented["loss"], rtol=1e-6, atol=0)


@pytest.mark.parametrize("grad_cache", [False, True])
def test_training_with_the_augmentations_resumes_bitwise(tmp_path, grad_cache):
    from finelip_kit.train import Trainer, TrainConfig
    from test_train import scenes, tiny

    data = scenes(16)
    settings = dict(steps=4, batch_size=4, warmup_steps=0, progress=False, lr_backbone=1e-3, lr_new=1e-3, save_every=2,
                    keep_last=4, log_every=1, caption_drop_summary=0.5, caption_keep_sentences=0.5,
                    caption_shuffle_sentences=True, caption_pad_sentences=2, caption_inputs="full+augmented",
                    grad_cache=grad_cache, accumulation=2 if grad_cache else 1)

    def train(name, resume=None):
        model = tiny(loss="global+fine")
        history = Trainer(model, data, TrainConfig(out_dir=str(tmp_path / name), resume=resume, **settings)).fit()
        return model.state_dict(), history

    straight, history = train("straight")
    assert {"global_augmented", "fine_augmented"} <= set(history[-1])  # both inputs' terms are logged
    resumed, _ = train("resumed", resume=str(tmp_path / "straight" / "checkpoints" / "step_0000002"))
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


# ----------------------------------------------------------------------------- the paper-b16-debias preset
def test_the_debias_preset_trains_a_clip_on_sharegpt4v_style_data_with_two_text_inputs(tmp_path):
    """paper-b16-debias on stand-ins in the real formats: a tiny transformers CLIP directory for
    openai/clip-vit-base-patch16 and a ShareGPT4V json; every DeBias setting reaches the run."""
    from finelip_kit.experiments.presets import DEBIAS_CAPTIONS, RUN_PRESETS
    from finelip_kit.experiments.recipe import RunSpec, resolve, run
    from test_pretrained import hf_clip

    settings = resolve(RunSpec(preset="paper-b16-debias")).settings()
    assert {f"train.{k}": v for k, v in DEBIAS_CAPTIONS.items()}.items() <= settings.items()
    assert (settings["model.source"], settings["data.source"], settings["model.loss"]) == (
        "clip:openai/clip-vit-base-patch16", "sharegpt4v", "global")
    assert (settings["train.lr_backbone"], settings["train.weight_decay"], settings["train.warmup_steps"],
            settings["model.label_smoothing"], settings["model.use_atrm"], settings["model.use_clim"]) == (
        1e-6, 0.01, 200, 0.1, False, False)
    hf_clip().save_pretrained(str(tmp_path / "clip"))
    data = fakes.sharegpt4v(tmp_path / "sharegpt4v", n=12)
    result = run(RunSpec(preset="paper-b16-debias", name="debias", results_dir=str(tmp_path / "runs"), progress=False,
                         settings={"model.source": f"clip:{tmp_path / 'clip'}", "data.root": str(data),
                                   # another model.source starts from that model as it is: the preset's changes named again
                                   **{f"model.{k}": v for k, v in RUN_PRESETS["paper-b16-debias"]["model_overrides"].items()},
                                   "data.on_error": "skip", "data.train_split": "eval", "data.test_split": "eval", "train.steps": 2, "train.batch_size": 4,
                                   "train.num_workers": 0, "train.warmup_steps": 1, "train.eval_every": None,
                                   "train.save_every": None, "eval.size": 4}))
    record = result.record
    assert record["status"] == "ok" and record["settings"]["train.caption_inputs"] == "full+augmented"
    assert set(record["history"][-1]) == {"step", "loss", "global", "global_augmented"}
    assert record["history"][-1]["loss"] == pytest.approx(record["history"][-1]["global"] + record["history"][-1]["global_augmented"],
                                                          abs=2e-6)  # logged rounded to 6 places


def test_finelip_eval_runs_the_probes_on_any_dataset_and_writes_them(tmp_path, capsys):
    import json

    from finelip_kit.cli import main
    from finelip_kit.evaluation import caption_probes, probes_table
    from finelip_kit.model.pretrained import load_model

    root = fakes.docci(tmp_path / "docci")
    out = tmp_path / "results.json"
    assert main(["eval", "--model", "tiny-synthetic-clip", "--data", "docci", "--data-root", str(root), "--split", "test",
                 "--probes", "drop_first", "move_first", "first_k", "--prefix-k", "2", "--probe-position", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sentence-level probes" in printed and "HiMo@2 (global)" in printed
    written = json.loads(out.read_text())
    pairs = load_pairs("docci", split="test", root=root)
    expected = caption_probes(load_model("tiny-synthetic-clip"), pairs, ("drop_first", "move_first", "first_k"),
                              position=1, max_k=2)
    assert written["probes"].keys() == expected.keys() and "prefix/global/himo@2" in expected
    for key, value in expected.items():
        assert written["probes"][key] == pytest.approx(value), key
    table = probes_table(written["probes"], plain=written["metrics"])
    assert list(table.index) == ["none", "drop_first", "move_first", "first k=1", "first k=2"]
    assert table.loc["none", "global/t2i/R@1"] == written["metrics"]["global/t2i/R@1"]
    assert table.loc["drop_first", "global/t2i/R@1"] == written["probes"]["probe/drop_first/global/t2i/R@1"]
    assert table.attrs["himo"] == {"global": written["probes"]["prefix/global/himo@2"]}
    with pytest.raises(SystemExit):
        main(["eval", "--model", "tiny-synthetic-clip", "--data", "synthetic", "--probes", "reverse"])


# ----------------------------------------------------------------------------- the shipped calibration
def test_the_shipped_debias_records_are_the_grid_and_docs_show_the_reports_tables():
    """docs/debias/: ablations/grids/debias.yaml's 42 points (14 settings x seeds 0-2), all ok; docs/debias.md
    quotes benchmarks/debias_report.py's output on them verbatim, and its deltas and marks are the records' own."""
    import sys
    from pathlib import Path

    import numpy as np
    from scipy import stats

    from finelip_kit.ablation import load_records
    from finelip_kit.experiments.grid import load_spec

    root = Path(__file__).resolve().parents[1]
    frame = load_records("debias")
    spec = load_spec(root / "ablations" / "grids" / "debias.yaml")
    assert len(frame) == len(spec.points) == 42 and set(frame["status"]) == {"ok"}
    assert set(frame["run_name"]) == set(spec.points)
    sys.path.insert(0, str(root / "benchmarks"))
    import debias_report

    text = debias_report.report_text(frame)
    page = (root / "docs" / "debias.md").read_text()
    assert text in page
    # one cell recomputed from the records: global-only, every augmentation, within-group t2i on test
    part = debias_report.arm_frame(frame[frame["data.summary_objects"].fillna(0) == 0], "global")
    by_seed = {name: rows.set_index("seed")["global/group/t2i"] for name, rows in part.groupby("augmentation")}
    all_, none = by_seed["all (+ shuffled)"], by_seed["none"]
    delta = float((all_ - none).mean())
    low, high = stats.t.interval(0.95, 2, loc=delta, scale=float((all_ - none).std(ddof=1)) / np.sqrt(3))
    mark = ("†" if abs(delta) > 2 * max(all_.std(ddof=1), none.std(ddof=1)) else "") + ("*" if low > 0 or high < 0 else "")
    assert f"{all_.mean():.1f} ± {all_.std(ddof=1):.1f} ({delta:+.1f}{mark})" in text
