"""The one model resolver: every documented form of a model name, and the error for none."""

import time

import pytest
import torch

from finelip_kit import FineLIP, create_model
from finelip_kit.cli import main as cli_main
from finelip_kit.pretrained import load_model


def test_preset_forms_build_fresh_models_with_overrides():
    for spec in ("tiny", "preset:tiny"):
        model = load_model(spec, atrm_k=8)
        assert isinstance(model, FineLIP) and model.config.atrm_k == 8
        assert model.config == create_model("tiny", atrm_k=8).config


def test_the_packaged_name_and_a_checkpoint_dir_restore_weights(tmp_path):
    packaged = load_model("tiny-synthetic-clip")
    assert packaged.context_length == 77
    packaged.save_pretrained(str(tmp_path / "ckpt"))
    restored = load_model(str(tmp_path / "ckpt"))
    assert all(torch.equal(a, b) for a, b in zip(packaged.state_dict().values(), restored.state_dict().values()))
    stretched = load_model("tiny-synthetic-clip", **{"text.context_length": 248, "text.stretch": "kps"})
    assert stretched.context_length == 248


def test_transformers_dirs_and_openai_files_resolve_to_their_loaders(tmp_path):
    from test_pretrained import hf_clip, open_clip_model

    hf_clip().save_pretrained(str(tmp_path / "hf"))
    for spec in (str(tmp_path / "hf"), f"hf:{tmp_path / 'hf'}", f"clip:{tmp_path / 'hf'}"):
        assert load_model(spec, context_length=77, stretch="none").context_length == 77
    torch.save(open_clip_model().state_dict(), tmp_path / "ViT.pt")
    assert load_model(str(tmp_path / "ViT.pt")).context_length == 248


def test_an_unknown_name_lists_the_forms_at_once_without_a_hub_call(monkeypatch):
    import finelip_kit.pretrained as pretrained

    monkeypatch.setattr(pretrained, "from_clip", lambda *a, **k: pytest.fail("the hub was asked"))
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"(?s)no model 'tni'.*Did you mean \['tiny'\].*preset:<name>.*tiny-synthetic-clip"):
        load_model("tni")
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*presets: \['clip-b16', 'clip-l14', 'tiny'\]"):
        load_model("preset:huge")
    assert time.perf_counter() - started < 1.0


def test_a_directory_without_a_config_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        load_model(str(tmp_path / "empty"))


@pytest.mark.parametrize("spec", ["tiny", "preset:tiny", "tiny-synthetic-clip"])
def test_finelip_eval_takes_every_offline_form(tmp_path, spec):
    out = tmp_path / "r.json"
    assert cli_main(["eval", "--model", spec, "--data", "synthetic", "--size", "8", "--out", str(out)]) == 0
    assert out.is_file()


def test_one_parser_names_every_form_and_model_config_follows_it(tmp_path):
    from finelip_kit.model import create_model, model_config, parse_spec

    create_model("tiny").save_pretrained(str(tmp_path / "ours"))
    assert parse_spec("preset:tiny") == ("preset", "tiny") and parse_spec("tiny") == ("preset", "tiny")
    assert parse_spec("hf:org/name") == ("hub", "org/name") and parse_spec("org/name") == ("hub", "org/name")
    assert parse_spec(str(tmp_path / "ours")) == ("finelip", tmp_path / "ours")
    assert parse_spec("tiny-synthetic-clip") == ("asset", "tiny-synthetic-clip")
    # model_config reads what load_model would build, for the same spec, in the same order
    for spec in ("tiny", "preset:tiny", str(tmp_path / "ours"), "tiny-synthetic-clip"):
        assert model_config(spec, atrm_k=3).atrm_k == load_model(spec, atrm_k=3).config.atrm_k == 3
    assert model_config("tni") is None and model_config("org/name") is None  # not a model / not readable offline
