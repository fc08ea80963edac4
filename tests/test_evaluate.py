"""Evaluation: metrics on hand-made score matrices, scoring modes, re-ranking, probes, CLI."""

import json

import pytest
import torch

import fakes
from finelip_kit import FineLIP, create_model
from finelip_kit.data import SyntheticConfig, SyntheticScenes, load_pairs
from finelip_kit.evaluate import (
    effective_length_curve,
    encode_gallery,
    evaluate_retrieval,
    evaluate_zeroshot,
    group_accuracy,
    group_members,
    paper_table,
    published_table,
    ranks_of_truth,
    rerank_scores,
    retrieval_metrics,
    score_gallery,
    within_group_scores,
)


def test_recall_on_a_hand_made_matrix_with_known_ranks():
    # 3 images x 3 captions; caption j belongs to image j.
    scores = torch.tensor([[0.9, 0.1, 0.2],    # image 0: own caption first
                           [0.8, 0.5, 0.1],    # image 1: own caption second
                           [0.7, 0.6, 0.3]])   # image 2: own caption third
    truth = torch.tensor([0, 1, 2])
    metrics = retrieval_metrics(scores, truth, ks=(1, 2, 3))
    assert metrics["i2t/R@1"] == pytest.approx(100 / 3) and metrics["i2t/R@2"] == pytest.approx(200 / 3)
    assert metrics["i2t/R@3"] == 100.0
    # text->image: caption 0 column [0.9, 0.8, 0.7] -> rank 0; caption 1 [0.1, 0.5, 0.6] -> rank 1; caption 2 [0.2, 0.1, 0.3] -> 0
    assert metrics["t2i/R@1"] == pytest.approx(200 / 3) and metrics["t2i/R@2"] == 100.0


def test_ties_are_broken_by_index():
    scores = torch.tensor([[0.5, 0.5, 0.5]])
    assert ranks_of_truth(scores, torch.tensor([0])).item() == 0
    assert ranks_of_truth(scores, torch.tensor([2])).item() == 2
    metrics = retrieval_metrics(torch.tensor([[0.5, 0.5], [0.5, 0.5]]), torch.tensor([0, 1]), ks=(1,))
    assert metrics == {"i2t/R@1": 50.0, "t2i/R@1": 50.0}


def test_several_captions_per_image_any_caption_counts_for_i2t():
    # 2 images, 4 captions: captions 0,1 -> image 0; 2,3 -> image 1.
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.2],
                           [0.3, 0.2, 0.1, 0.4]])
    truth = torch.tensor([0, 0, 1, 1])
    metrics = retrieval_metrics(scores, truth, ks=(1, 2))
    assert metrics["i2t/R@1"] == 100.0  # image 0's best is caption 1 (own); image 1's best is caption 3 (own)
    # t2i: caption 0 [0.1, 0.3] -> miss; 1 [0.9, 0.2] hit; 2 [0.5, 0.1] miss; 3 [0.2, 0.4] hit
    assert metrics["t2i/R@1"] == 50.0 and metrics["t2i/R@2"] == 100.0


def test_group_accuracy_only_compares_inside_groups():
    # 4 images in 2 groups; caption j belongs to image j.
    scores = torch.tensor([[0.9, 0.1, 0.0, 0.0],
                           [0.8, 0.7, 0.0, 0.0],
                           [0.0, 0.0, 0.2, 0.6],
                           [0.99, 0.99, 0.3, 0.5]])  # image 3 scores group-0 captions high: ignored
    truth = torch.arange(4)
    groups = torch.tensor([0, 0, 1, 1])
    result = group_accuracy(scores, truth, groups, groups)
    # i2t inside groups: img0 -> cap0 yes; img1 -> cap0 (0.8 > 0.7) no; img2 -> cap3 no; img3 -> cap3 (0.5 > 0.3) yes
    # t2i inside groups: cap0 -> img0 yes; cap1 -> img1 (0.7 > 0.1) yes; cap2 -> img3 (0.3 > 0.2) no; cap3 -> img2 (0.6 > 0.5) no
    assert result == {"group/i2t": 50.0, "group/t2i": 50.0}


@pytest.fixture(scope="module")
def tiny_gallery():
    torch.manual_seed(0)
    model = create_model("tiny", **{"vision.image_size": 32, "atrm_k": 4}).eval()
    data = SyntheticScenes(SyntheticConfig(image_size=32), split="test", size=24)
    return model, data, encode_gallery(model, data, batch_size=7)


def test_gallery_and_modes(tiny_gallery):
    model, data, gallery = tiny_gallery
    assert gallery.images.global_.shape == (24, 64) and gallery.texts.tokens.shape == (24, 5, 64)
    assert gallery.text_image.tolist() == list(range(24)) and gallery.image_groups.tolist() == [g // 4 for g in range(24)]
    fine = score_gallery(model, gallery, "fine")
    torch.testing.assert_close(score_gallery(model, gallery, "fine", chunk_bytes=5_000), fine)  # any chunking
    fused = score_gallery(model, gallery, "fused", fuse_weight=0.3)
    torch.testing.assert_close(fused, 0.7 * score_gallery(model, gallery, "global") + 0.3 * fine)
    result = evaluate_retrieval(model, data, gallery=gallery)
    expected = retrieval_metrics(fine, gallery.text_image)
    assert result["fine/i2t/R@1"] == expected["i2t/R@1"] and result["fine/t2i/R@5"] == expected["t2i/R@5"]
    assert set(result.table.index.get_level_values(0)) == {"global", "fine", "fused"}
    assert "group acc" in result.table.columns


def test_rerank_with_k_equal_to_the_gallery_is_full_scoring(tiny_gallery):
    model, data, gallery = tiny_gallery
    full = evaluate_retrieval(model, data, modes=("fine", "fused"), gallery=gallery)
    reranked = evaluate_retrieval(model, data, modes=("fine", "fused"), rerank_k=24, gallery=gallery)
    for mode in ("fine", "fused"):
        for key in ("i2t/R@1", "i2t/R@5", "t2i/R@1", "t2i/R@10", "group/i2t", "group/t2i"):
            assert reranked[f"{mode}@rerank24/{key}"] == full[f"{mode}/{key}"], (mode, key)
    for_i2t, for_t2i = rerank_scores(model, gallery, 3, "fine")
    fine = score_gallery(model, gallery, "fine")
    top = score_gallery(model, gallery, "global").topk(3, dim=1).indices
    rows = torch.arange(24).unsqueeze(1).expand_as(top)
    torch.testing.assert_close(for_i2t[rows, top], fine[rows, top])
    assert (for_i2t.max(dim=1).values == for_i2t[rows, top].max(dim=1).values).all()  # candidates come first


def test_within_group_scores_equal_full_scores_inside_groups(tiny_gallery):
    model, data, gallery = tiny_gallery
    same = gallery.image_groups.unsqueeze(1) == gallery.text_groups.unsqueeze(0)
    for mode in ("fine", "fused"):
        full = score_gallery(model, gallery, mode)
        for_i2t, for_t2i = within_group_scores(model, gallery, mode)
        for scores in (for_i2t, for_t2i):
            torch.testing.assert_close(scores[same], full[same])
            assert torch.isneginf(scores[~same]).all()
    # Two-stage with k=1 ranks only one candidate, yet its within-group accuracy is the exact one.
    full = evaluate_retrieval(model, data, modes=("fine", "fused"), gallery=gallery)
    reranked = evaluate_retrieval(model, data, modes=("fine", "fused"), rerank_k=1, gallery=gallery)
    for mode in ("fine", "fused"):
        for key in ("group/i2t", "group/t2i"):
            assert reranked[f"{mode}@rerank1/{key}"] == full[f"{mode}/{key}"], (mode, key)


def test_group_members_pads_uneven_groups_and_rejects_orphans():
    members = group_members(torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 1, 2, 0, 1]))
    assert members.tolist() == [[1, 4, 1], [0, 2, 5], [0, 2, 5], [3, 3, 3]]
    with pytest.raises(ValueError, match="group 7 has queries but no candidates"):
        group_members(torch.tensor([0, 7]), torch.tensor([0, 0]))


def test_effective_length_curve_truncates_captions(tiny_gallery):
    model, data, _ = tiny_gallery
    curve = effective_length_curve(model, data, lengths=(20, 77, 300))
    assert curve.index.tolist() == [20, 77, 300] and curve["context"].tolist() == [20, 77, 248]
    # Inside a group, 77-token truncations are identical: any model is at chance (ties -> first image).
    assert curve.loc[77, "group/t2i"] == 25.0


def test_zeroshot_accuracy_matches_a_manual_computation():
    torch.manual_seed(0)
    model = create_model("tiny", **{"vision.image_size": 32}).eval()
    images = [torch.randn(3, 32, 32) for _ in range(6)]
    names = ["red square", "blue circle", "green ring"]
    labels = [0, 1, 2, 0, 1, 2]
    result = evaluate_zeroshot(model, images, labels, names, templates=("a {}.", "a picture of a {}."))
    from finelip_kit import get_tokenizer

    tok = get_tokenizer(context_length=model.context_length)
    import torch.nn.functional as F

    with torch.no_grad():
        classes = []
        for name in names:
            t = tok([f"a {name}.", f"a picture of a {name}."])
            classes.append(F.normalize(F.normalize(model.encode_text(t.input_ids, t.attention_mask).global_, dim=-1).mean(0), dim=-1))
        logits = F.normalize(model.encode_image(torch.stack(images)).global_, dim=-1) @ torch.stack(classes).T
    expected = 100 * (logits.argmax(1) == torch.tensor(labels)).float().mean().item()
    assert result["top1"] == pytest.approx(expected) and result["top5"] == 100.0
    with pytest.raises(ValueError, match="labels must index classnames"):
        evaluate_zeroshot(model, images, [0, 1, 2, 3, 0, 0], names)


@pytest.mark.parametrize("layout", ["urban1k", "docci", "dci", "coco", "flickr30k"])
def test_full_evaluation_on_each_dataset_layout(tmp_path, layout):
    torch.manual_seed(0)
    model = create_model("tiny", **{"vision.image_size": 32, "atrm_k": 4}).eval()
    root = {"urban1k": lambda: fakes.urban1k(tmp_path, zipped=False), "docci": lambda: fakes.docci(tmp_path),
            "dci": lambda: fakes.dci(tmp_path), "coco": lambda: fakes.karpathy(tmp_path, "coco"),
            "flickr30k": lambda: fakes.karpathy(tmp_path, "flickr30k")}[layout]()
    split = {"dci": "all"}.get(layout, "test")
    pairs = load_pairs(layout, split=split, root=root)
    result = evaluate_retrieval(model, pairs, rerank_k=2)
    gallery = encode_gallery(model, pairs)
    assert len(gallery.text_image) == len(pairs) and gallery.images.global_.shape[0] == pairs.num_images
    for key in ("global/i2t/R@1", "fine@rerank2/t2i/R@5", "fused@rerank2/i2t/R@10"):
        assert 0.0 <= result[key] <= 100.0
    assert result["global/i2t/R@10"] == 100.0  # fewer than 10 images


def test_paper_table_and_published_numbers(tiny_gallery):
    model, data, gallery = tiny_gallery
    result = evaluate_retrieval(model, data, modes=("global",), gallery=gallery)
    table = paper_table({"Urban1k": result})
    assert table.loc["this run", ("urban1k", "I2T", "R@1")] == round(result["global/i2t/R@1"], 1)
    assert table.loc["FineLIP B/16 (FineLIP Table 1 as quoted by two secondary sources)", ("urban1k", "T2I", "R@1")] == 89.3
    assert set(published_table("docci")["model"]) == {"Long-CLIP", "FineLIP"}


def test_cli_eval_and_notebook_03_write_one_form_of_results(tmp_path):
    from finelip_kit.cli import main

    torch.manual_seed(0)
    create_model("tiny", **{"atrm_k": 4}).save_pretrained(tmp_path / "model")
    out = tmp_path / "results.json"
    assert main(["eval", "--model", str(tmp_path / "model"), "--data", "synthetic", "--size", "16", "--rerank-k", "4",
                 "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["data"] == "synthetic" and "fine@rerank4/t2i/R@1" in saved["metrics"]
    from finelip_kit.evaluation import RESULTS_VERSION, evaluation_results

    model = FineLIP.from_pretrained(tmp_path / "model")
    result = evaluate_retrieval(model, SyntheticScenes(split="test", size=16), rerank_k=4)
    assert saved == evaluation_results(result, model=str(tmp_path / "model"), data="synthetic", split=None, pairs=16)
    assert saved["version"] == RESULTS_VERSION and saved["pairs"] == 16 and saved["chance"] == result.chance
    assert saved["clip_benchmark"]["text_retrieval_recall@1"] == saved["metrics"]["global/i2t/R@1"] / 100
    result.metrics["global/t2i/R@1"] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite metrics \['global/t2i/R@1'\]"):
        evaluation_results(result, model="m", data="synthetic", split=None)


def test_within_group_chance_is_what_a_random_scorer_gets_on_average():
    from finelip_kit.evaluate import group_chance

    # groups: images {0, 1} with texts {0, 1, 2} (image 0 has captions 0 and 1), images {2, 3, 4} with texts {3, 4, 5}
    text_image = torch.tensor([0, 0, 1, 2, 3, 4])
    image_groups, text_groups = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 0, 0, 1, 1, 1])
    chance = group_chance(text_image, image_groups, text_groups)
    # i2t: image 0 has 2 of 3, image 1 has 1 of 3, images 2-4 have 1 of 3 each; t2i: 1 of 2 (group 0), 1 of 3 (group 1)
    assert chance["group/i2t"] == pytest.approx(100 * (2 / 3 + 1 / 3 + 3 * 1 / 3) / 5)
    assert chance["group/t2i"] == pytest.approx(100 * (3 * 1 / 2 + 3 * 1 / 3) / 6)
    generator = torch.Generator().manual_seed(0)  # and a random scorer lands there
    draws = [group_accuracy(torch.rand(5, 6, generator=generator), text_image, image_groups, text_groups)
             for _ in range(4000)]
    for key in chance:
        assert sum(d[key] for d in draws) / len(draws) == pytest.approx(chance[key], abs=1.5)


def test_the_evaluation_table_and_the_cli_print_chance_and_count_items_not_pairs(tiny_gallery, capsys):
    model, data, gallery = tiny_gallery
    result = evaluate_retrieval(model, data, gallery=gallery)
    assert result.chance == {"group/i2t": 25.0, "group/t2i": 25.0}  # the synthetic groups of four
    assert set(result.table["group chance"]) == {25.0}
    from finelip_kit.cli import summary_table

    table = summary_table(result.metrics, result.chance)
    assert table.splitlines()[-1].split() == ["chance", "25.0", "25.0"]
    encode_gallery(model, data, progress=True)
    assert "encoding 24 images + 24 captions" in capsys.readouterr().err  # it counted 48 "pairs" before


def test_the_cli_answers_version_and_help_without_importing_torch():
    import subprocess
    import sys

    from finelip_kit import __version__

    probe = ("import sys\nfrom finelip_kit.cli import main\nfor argv in ({}):\n    try:\n        main(argv)\n"
             "    except SystemExit:\n        pass\nprint('torch imported:', 'torch' in sys.modules)")
    for argv in ("['--help'], ['train', '--help'], ['grid', '--help'], ['eval', '--help']", "['--version'],"):
        done = subprocess.run([sys.executable, "-c", probe.format(argv)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "torch imported: False" in done.stdout, done.stdout + done.stderr
    version = subprocess.run([sys.executable, "-m", "finelip_kit.cli", "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"finelip-kit {__version__}"
