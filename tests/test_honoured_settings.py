"""Settings that were silently not honoured (issue 17, list 5), each checked where it is used."""

import torch

from finelip_kit.data import SyntheticConfig, SyntheticScenes
from finelip_kit.evaluate import effective_length_curve, evaluate_retrieval, evaluate_zeroshot
from finelip_kit.train import Trainer, TrainConfig, parameter_groups
from test_train import tiny

DATA = SyntheticScenes(SyntheticConfig(image_size=32), split="test", size=8)


def test_finelip_eval_fuses_with_the_models_own_weight(tmp_path, monkeypatch):
    import finelip_kit.evaluate as evaluate
    from finelip_kit.cli import main as cli_main

    model = tiny(fuse_weight=0.5)
    model.save_pretrained(str(tmp_path / "m"))
    seen = {}
    original = evaluate.evaluate_retrieval

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_retrieval", spy)
    assert cli_main(["eval", "--model", str(tmp_path / "m"), "--data", "synthetic", "--size", "8", "--modes", "fused",
                     "--out", str(tmp_path / "r.json")]) == 0
    assert seen["fuse_weight"] is None  # None: the model's fuse_weight (0.5), not a hard-coded 0.2
    import json

    written = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert written == original(model, SyntheticScenes(split="test", size=8), modes=["fused"], fuse_weight=0.5).metrics


def test_two_stage_scoring_keeps_the_memory_budget(monkeypatch):
    import finelip_kit.clim as clim

    budgets = []
    original = clim.clim_candidate_scores

    def spy(*args):
        budgets.append(args[-1])
        return original(*args)

    monkeypatch.setattr(clim, "clim_candidate_scores", spy)
    model = tiny()
    reference = evaluate_retrieval(model, DATA, modes=["fine"], rerank_k=2)
    assert evaluate_retrieval(model, DATA, modes=["fine"], rerank_k=2, chunk_bytes=4096).metrics == reference.metrics
    assert set(budgets[len(budgets) // 2:]) == {4096}  # the re-ranking and the exact within-group scores both


def test_evaluation_helpers_leave_a_training_model_training():
    model = tiny()
    model.train()
    effective_length_curve(model, DATA, lengths=[10, 77])
    assert model.training
    evaluate_zeroshot(model, [DATA[i]["image"] for i in range(4)], [0, 1, 0, 1], ["cube", "ring"])
    assert model.training
    evaluate_retrieval(model, DATA, modes=["global"])
    assert model.training
    from finelip_kit.evaluate import caption_probes

    caption_probes(model, DATA, ("drop_first", "first_k"), modes=("global",), max_k=2)
    assert model.training
    model.eval()
    evaluate_zeroshot(model, [DATA[0]["image"]], [0], ["cube"])
    assert not model.training


def test_the_model_owns_its_parameter_groups_whatever_wraps_it():
    model = tiny(**{"text.freeze_kept_positions": True})
    own = model.parameter_groups(1e-6, 2e-4, 0.01)
    compiled = torch.compile(model)  # parameter names gain an "_orig_mod." prefix; nothing is compiled until called
    for a, b in zip(own, parameter_groups(compiled, 1e-6, 2e-4, 0.01)):
        assert a["names"] == b["names"] and a["lr"] == b["lr"] and a["weight_decay"] == b["weight_decay"]
    new = {name for g in own if g["kind"] == "new" for name in g["names"]}
    assert new == {name for name, p in model.named_parameters()
                   if any(p is q for q in model.new_parameters())}
    assert "text.transformer.embeddings.position_embedding.trainable" in new and "logit_scale" in new
    # the same split as the name rule it replaces, on this model
    for group in own:
        for name in group["names"]:
            param = dict(model.named_parameters())[name]
            by_name = param.ndim >= 2 and not any(k in name for k in ("embedding", "pos_embed", "cls_token", "position"))
            assert (group["weight_decay"] > 0) == by_name, name


def test_the_hardest_negatives_switch_is_the_trainers_at_the_named_step(tmp_path):
    from finelip_kit.ablation import validate_parameters

    data = SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=40)
    config = TrainConfig(out_dir=str(tmp_path), steps=6, batch_size=8, hardest_after_steps=3, group_batches=True,
                         progress=False)
    trainer = Trainer(tiny(), data, config)
    switch = []
    for step in range(6):
        trainer.step = step
        switch.append(trainer._negatives())
    assert switch == [None, None, None, "hardest", "hardest", "hardest"]
    settings = validate_parameters(negatives="hardest", hardest_after_steps=3).to_settings()
    assert settings["train.hardest_after_steps"] == 3 and "train.hardest_after_epochs" not in settings
