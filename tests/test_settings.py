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


# ----------------------------------------------------------------------------- one schema
def test_the_kinds_are_declared_on_the_fields_and_every_list_is_read_from_them():
    import dataclasses

    from finelip_kit.ablation.params import BOOKKEEPING as POINT_OUTPUT, GridParameters
    from finelip_kit.settings import DataSpec, EvalSpec, bookkeeping_keys, known_keys
    from finelip_kit.train.config import RESUME_CHANGEABLE, RESUME_IGNORED, TrainConfig

    # the lists as they were kept by hand, less the field that never existed (eval.progress) and
    # the setting that moved (train.eval_modes is eval.modes)
    assert set(bookkeeping_keys()) == {f"train.{k}" for k in (
        "out_dir", "progress", "resume", "resume_changes", "requeue", "log_every", "eval_every", "save_every",
        "keep_last", "num_workers", "device", "tracker", "attention", "grad_checkpointing", "compile", "tf32",
        "adamw_kernel")}
    assert set(RESUME_IGNORED) == {k.split(".", 1)[1] for k in bookkeeping_keys()}
    assert set(RESUME_CHANGEABLE) == {"steps", "epochs", "train_minutes", "max_nonfinite", "precision"}
    assert POINT_OUTPUT == ("results_dir", "run_name", "progress")
    # every name in every list is a field (the drift the hand-kept lists had)
    for key in bookkeeping_keys():
        section, name = key.split(".", 1)
        assert name in known_keys()[section], key
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(RESUME_IGNORED) | set(RESUME_CHANGEABLE) <= train_fields
    assert set(POINT_OUTPUT) <= {f.name for f in dataclasses.fields(GridParameters)}
    assert not {f.name for f in dataclasses.fields(DataSpec)} & {k.split(".")[1] for k in bookkeeping_keys()}
    assert "eval_modes" not in train_fields and "modes" in {f.name for f in dataclasses.fields(EvalSpec)}


def test_one_validator_names_the_setting_what_it_wants_and_the_value():
    from finelip_kit.schema import Check, integer, setting, validate
    from dataclasses import dataclass

    @dataclass
    class Section:
        count: int = setting(1, check=integer(1))
        rate: float = 0.5
        name: str | None = None
        pair: tuple = (1, 2)  # not a plain annotation: its own check would say

        def __post_init__(self):
            validate(self, "section.")

        def relations(self):
            return [(self.count < 10 or self.rate == 0, f"count {self.count} needs rate 0, got {self.rate}")]

    assert Section(count=3, rate=2, name="x").rate == 2  # an int where a float is expected
    cases = [({"count": 0}, "section.count must be an integer >= 1, got 0"),
             ({"count": 1.5}, "section.count must be an integer (int), got 1.5 (float)"),
             ({"count": True}, "section.count must be an integer (int), got True (bool)"),
             ({"count": None}, "section.count must not be None (expected int)"),
             ({"rate": "0.1"}, "section.rate must be a number (float), got '0.1' (str)"),
             ({"rate": float("nan")}, "section.rate must be finite, got nan"),
             ({"name": 3}, "section.name must be a string or None (str | None), got 3 (int)"),
             ({"count": 12}, "count 12 needs rate 0, got 0.5")]
    for values, message in cases:
        with pytest.raises(ValueError) as error:
            Section(**values)
        assert str(error.value) == message
    assert Check(lambda v: v > 0, "positive").wanted == "positive"


def test_every_config_section_checks_itself_with_the_one_validator():
    import ast
    from pathlib import Path

    import finelip_kit

    root = Path(finelip_kit.__file__).parent
    sections = {"model/config.py": ("VisionConfig", "TextConfig", "FineLIPConfig"), "train/config.py": ("TrainConfig",),
                "experiments/settings.py": ("DataSpec", "EvalSpec"), "data/synthetic.py": ("SyntheticConfig",),
                "experiments/params.py": ("GridParameters",)}
    for path, classes in sections.items():
        tree = ast.parse((root / path).read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in classes:
                post_init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__post_init__")
                calls = [c.func.id for c in ast.walk(post_init) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]
                assert "validate" in calls, f"{path}:{node.name}"
                raises = [n for n in ast.walk(post_init) if isinstance(n, ast.Raise)]
                assert raises == [], f"{path}:{node.name} raises outside validate"
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert not names & {"_require", "_check_int", "_check_number", "_check_choice", "_check_numbers", "_check_type"}, path


def test_the_old_name_of_the_evaluation_modes_still_works_with_a_deprecation_message(tmp_path):
    from finelip_kit.recipe import RunSpec, resolve

    with pytest.warns(DeprecationWarning, match="'train.eval_modes' is now 'eval.modes'"):
        assert canonical("train.eval_modes") == "eval.modes"
    with pytest.warns(DeprecationWarning):
        resolved = resolve(RunSpec(settings={"train.eval_modes": ["global"]}, results_dir=str(tmp_path)))
    assert resolved.eval.modes == ("global",)
    assert "train.eval_modes" not in resolved.settings() and resolved.settings()["eval.modes"] == ["global"]


def test_a_checkpoint_that_names_a_setting_since_moved_still_resumes():
    from finelip_kit.train.checkpoint import check_resume_config
    from finelip_kit.train.config import TrainConfig

    config = TrainConfig(out_dir="x")
    saved = {**config.to_dict(), "eval_modes": ["global"]}  # written before eval.modes was the one setting
    check_resume_config(saved, config, "step_2")  # no error
    with pytest.raises(ValueError, match=r"lr_new: checkpoint 0.5 -> now 0.001"):
        check_resume_config({**saved, "lr_new": 0.5}, config, "step_2")
