"""The one settings vocabulary: dotted keys, aliases, bare field names, one error type."""

import pytest

from finelip_kit import create_model
from finelip_kit.config import SettingError
from finelip_kit.settings import ALIASES, all_keys, by_section, canonical, from_short_names, normalise, short_name


@pytest.mark.parametrize("name, key", [
    ("model.atrm_k", "model.atrm_k"),
    ("atrm_k", "model.atrm_k"),                      # a grid alias
    ("pe_mode", "model.text.stretch"),
    ("lr", "train.lr_backbone"),
    ("eval_size", "eval.size"),
    ("seed", "train.seed"),                          # the run's seed, not the synthetic data's (data.seed)
    ("warmup_steps", "train.warmup_steps"),          # a bare field of one section
    ("differing_objects", "data.differing_objects"),
    ("text.stretch", "model.text.stretch"),          # a model config key as FineLIPConfig.replace writes it
    ("stretch", "model.text.stretch"),               # a field of one tower only
    ("context_length", "model.text.context_length"),
    ("embed_dim", "model.embed_dim"),
    ("model.context_length", "model.text.context_length"),
    ("data.source", "data.source"),
    ("eval.alt_captions", "eval.alt_captions"),
])
def test_every_name_has_one_dotted_key(name, key):
    assert canonical(name) == key


@pytest.mark.parametrize("name, message", [
    ("model.atrmk", r"unknown setting 'model.atrmk': section 'model' has no key 'atrmk'; did you mean \['model.atrm_k'"),
    ("train.lr", r"unknown setting 'train.lr'.*did you mean \['train.lr_backbone'"),
    ("data.differing_object", r"did you mean \['data.differing_objects'"),
    ("eval.sizes", r"section 'eval' has no key 'sizes'; did you mean \['eval.size'"),
    ("atrmk", r"unknown setting 'atrmk'.*did you mean \['atrm_k'"),
    ("image_size", r"setting 'image_size' is ambiguous: write data.image_size or model.vision.image_size"),
    ("width", r"setting 'width' is ambiguous: write model.vision.width or model.text.width"),
    ("", "a setting key must be a non-empty string"),
])
def test_unknown_and_ambiguous_keys_are_one_error_type_that_names_the_closest(name, message):
    with pytest.raises(SettingError, match=message) as error:
        canonical(name)
    assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)  # caught as either


def test_normalise_groups_by_section_and_refuses_two_values_for_one_key():
    settings = normalise({"atrm_k": 8, "train.steps": 5, "data.differing_objects": 3, "eval.size": 16})
    assert settings == {"model.atrm_k": 8, "train.steps": 5, "data.differing_objects": 3, "eval.size": 16}
    assert by_section(settings) == {"model": {"atrm_k": 8}, "train": {"steps": 5}, "data": {"differing_objects": 3},
                                    "eval": {"size": 16}}
    assert normalise({"atrm_k": 8, "model.atrm_k": 8}) == {"model.atrm_k": 8}
    with pytest.raises(SettingError, match=r"'atrm_k'=8 and 'model.atrm_k'=4 set the same setting 'model.atrm_k'"):
        normalise({"atrm_k": 8, "model.atrm_k": 4})


def test_every_config_field_is_reachable_and_every_alias_is_a_key():
    from dataclasses import fields

    from finelip_kit.data import SyntheticConfig
    from finelip_kit.train import TrainConfig

    keys = set(all_keys())
    assert {f"train.{f.name}" for f in fields(TrainConfig)} <= keys
    assert {f"data.{f.name}" for f in fields(SyntheticConfig)} <= keys
    assert {"model.text.context_length", "model.vision.width", "model.embed_dim", "model.source"} <= keys
    assert set(ALIASES.values()) <= keys
    assert short_name("model.atrm_k") == "atrm_k" and short_name("data.differing_objects") == "data.differing_objects"


def test_the_model_config_takes_the_same_names():
    # create_model and load_pretrained accept the same keys (the issue: context_length raised KeyError in one)
    model = create_model("tiny", context_length=77, stretch="none", **{"model.atrm_k": 8})
    assert model.context_length == 77 and model.config.text.stretch == "none" and model.config.atrm_k == 8
    with pytest.raises(SettingError, match=r"did you mean \['model.atrm_k'"):
        create_model("tiny", atrmk=3)


def test_grid_short_names_translate_once():
    assert from_short_names({"atrm_k": 8, "lr": None, "negatives": "sum", "hardest_after_steps": 60}) == {
        "model.atrm_k": 8, "train.hardest_after_steps": None}
    assert from_short_names({"negatives": "hardest", "hardest_after_steps": 0})["train.hardest_after_steps"] == 0
    with pytest.raises(SettingError, match="needs hardest_after_steps"):
        from_short_names({"negatives": "hardest"})
