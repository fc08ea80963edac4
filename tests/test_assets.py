"""The packaged tiny base model: loads by name, reconfigures, and its recorded metrics reproduce."""

import pytest
import torch

from finelip_kit import FineLIP
from finelip_kit.weights.assets import asset_metrics, asset_names
from finelip_kit.data.synthetic import vocabulary_token_ids
from finelip_kit.pretrained import load_model
from finelip_kit.recipe import TRAIN_PRESETS


def test_tiny_base_loads_by_name_with_a_77_token_context():
    assert "tiny-synthetic-clip" in asset_names()
    model = FineLIP.from_pretrained("tiny-synthetic-clip")
    assert model.context_length == 77 and model.config.loss == "global" and model.image_atrm is None
    table = model.text.transformer.embeddings.token_embedding.weight
    used = vocabulary_token_ids()
    assert (table[used].abs().sum(1) > 0).all()  # every row the synthetic captions use is stored
    assert int((table.abs().sum(1) > 0).sum()) < 200  # ... and little else: the asset stays small


def test_synthetic_tiny_preset_stretches_the_base_and_adds_finelip_modules():
    preset = TRAIN_PRESETS["synthetic-tiny"]
    base = FineLIP.from_pretrained("tiny-synthetic-clip")
    model = load_model(preset["model"], **preset["model_overrides"])
    assert model.context_length == 248 and model.config.use_atrm and model.config.loss == "global+fine"
    assert torch.equal(model.text.position_table[:20], base.text.position_table[:20])
    assert model.text.transformer.embeddings.position_embedding.frozen.shape[0] == 20
    assert torch.equal(model.vision.vit.head.weight, base.vision.vit.head.weight)


def test_unknown_names_are_refused():
    with pytest.raises(FileNotFoundError, match="neither a checkpoint directory nor a packaged model"):
        FineLIP.from_pretrained("tiny-imaginary-clip")


def test_the_packaged_weights_give_the_recorded_metrics():
    from finelip_kit.pretrain import base_metrics

    recorded = asset_metrics("tiny-synthetic-clip")
    measured = base_metrics(FineLIP.from_pretrained("tiny-synthetic-clip"))
    for key, value in measured.items():  # the same evaluation of the same weights (rows past the vocabulary are unused)
        assert abs(value - recorded[key]) <= 0.1, (key, value, recorded[key])


@pytest.mark.slow
def test_the_script_reproduces_the_recorded_warm_up(tmp_path):
    """The first 50 steps are the warm-up, which does not depend on the run's length: a 50-step
    rerun must log the losses the 600-step run recorded at steps 1 and 50 (bitwise on the machine
    that made the asset). The whole rerun, with the final metrics, is the ``full`` test below
    (6 minutes on 2 cores: outside CI's 20-minute budget; ``pytest -m full``)."""
    from finelip_kit.pretrain import PRETRAIN, pretrain_tiny

    recorded = asset_metrics("tiny-synthetic-clip")
    warmup = PRETRAIN["warmup_steps"]
    metrics = pretrain_tiny(tmp_path, steps=warmup, seed=recorded["seed"], progress=False)
    assert sorted(metrics["loss"]) == [1, warmup]
    for step in (1, warmup):
        assert abs(metrics["loss"][step] - recorded["loss"][str(step)]) <= 1e-3, (step, metrics["loss"][step])


@pytest.mark.slow
@pytest.mark.full
def test_recorded_metrics_reproduce_when_the_script_is_rerun(tmp_path):
    from finelip_kit.pretrain import pretrain_tiny

    recorded = asset_metrics("tiny-synthetic-clip")
    metrics = pretrain_tiny(tmp_path, steps=recorded["steps"], seed=recorded["seed"], progress=False)
    for key in ("alt/i2t/R@1", "alt/t2i/R@1", "long/i2t/R@1", "long/t2i/R@1", "long/group/t2i"):
        # Bitwise on the machine that made the asset; within seed noise elsewhere.
        assert abs(metrics[key] - recorded[key]) <= 1.5, (key, metrics[key], recorded[key])
    final = max(int(step) for step in recorded["loss"])
    assert abs(metrics["loss"][final] - recorded["loss"][str(final)]) <= 0.1
