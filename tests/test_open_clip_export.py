"""Issue 21, item 1: a kit model exported in open_clip's layout loads in open_clip (both documented
ways) and gives the kit's global features; an open_clip folder loads back through the one resolver."""

import json

import open_clip
import pytest
import torch

from finelip_kit import create_model
from finelip_kit.cli import main
from finelip_kit.pretrained import export_open_clip, load_model
from finelip_kit.tokenizer import get_tokenizer

CONFIGS = {
    "tiny-gelu": {},
    "quick-gelu-narrow": {"vision.act": "quick_gelu", "text.act": "quick_gelu", "vision.width": 64, "vision.heads": 4,
                          "text.width": 64, "text.heads": 4, "text.mlp_dim": 200, "embed_dim": 32},
    "77-tokens": {"text.context_length": 77, "text.stretch": "none", "vision.depth": 2, "text.depth": 2},
}
CAPTIONS = ["a small red cube left of a large blue sphere, " * 12,  # about 120 tokens: beyond 77
            "two green cones and one yellow cylinder in the top row. " * 9, "a dog"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_open_clip_loads_the_export_and_gives_the_kits_global_features(name, tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny", **CONFIGS[name]).eval()
    export_open_clip(model, tmp_path / "export", name=f"finelip-{name}")
    images = torch.randn(3, 3, 64, 64)
    ours_tokens = get_tokenizer(context_length=model.context_length)(CAPTIONS, padding="max_length")
    with torch.no_grad():
        image = model.encode_image(images, fine=False).global_
        text = model.encode_text(ours_tokens.input_ids, ours_tokens.attention_mask, fine=False).global_
    # 1. open_clip's local-dir: schema (config + weights + tokenizer from the folder)
    clip, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'export'}")
    tokens = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'export'}")(CAPTIONS)
    assert tokens.shape == (3, model.context_length)
    assert torch.equal(tokens[ours_tokens.attention_mask.bool()], ours_tokens.input_ids[ours_tokens.attention_mask.bool()])
    clip.eval()
    with torch.no_grad():
        assert (clip.encode_image(images) - image).abs().max() <= 1e-5
        assert (clip.encode_text(tokens) - text).abs().max() <= 1e-5
    # 2. a registered config and pretrained=<file>
    open_clip.add_model_config(str(tmp_path / "export" / f"finelip-{name}.json"))
    again, _, _ = open_clip.create_model_and_transforms(f"finelip-{name}",
                                                        pretrained=str(tmp_path / "export" / "open_clip_model.safetensors"))
    again.eval()
    with torch.no_grad():
        assert (again.encode_image(images) - image).abs().max() <= 1e-5
    # 3. back into the kit through the one resolver: the same towers, bit for bit
    back = load_model(str(tmp_path / "export"))
    with torch.no_grad():
        assert torch.equal(back.encode_image(images, fine=False).global_, image)
        assert torch.equal(back.encode_text(ours_tokens.input_ids, ours_tokens.attention_mask, fine=False).global_, text)


def test_finelip_export_writes_the_open_clip_folder(tmp_path):
    torch.manual_seed(0)
    create_model("tiny").save_pretrained(str(tmp_path / "model"))
    assert main(["export", "--from", str(tmp_path / "model"), "--to", str(tmp_path / "oc"), "--what", "open_clip"]) == 0
    config = json.loads((tmp_path / "oc" / "open_clip_config.json").read_text())
    assert config["model_cfg"]["text_cfg"]["context_length"] == 248 and config["model_cfg"]["quick_gelu"] is False
    assert (tmp_path / "oc" / "open_clip_model.safetensors").is_file()


def test_an_export_open_clip_cannot_hold_is_refused_by_name(tmp_path):
    model = create_model("tiny", **{"vision.act": "quick_gelu"})
    with pytest.raises(ValueError, match="open_clip has one activation for both towers"):
        export_open_clip(model, tmp_path)


def test_an_open_clip_model_of_its_own_loads_into_the_kit_with_its_features(tmp_path):
    from safetensors.torch import save_file

    config = {"embed_dim": 48, "quick_gelu": True,
              "vision_cfg": {"image_size": 64, "layers": 2, "width": 96, "head_width": 32, "patch_size": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    (tmp_path / "oc").mkdir()
    (tmp_path / "oc" / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))
    torch.manual_seed(3)
    (tmp_path / "oc" / "open-clip-own.json").write_text(json.dumps(config))
    open_clip.add_model_config(str(tmp_path / "oc" / "open-clip-own.json"))
    clip = open_clip.create_model("open-clip-own").eval()  # open_clip's own random initialisation
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(tmp_path / "oc" / "open_clip_model.safetensors"))
    model = load_model(str(tmp_path / "oc")).eval()
    assert model.context_length == 77 and model.config.vision.act == "quick_gelu" and model.config.vision.heads == 3
    images = torch.randn(2, 3, 64, 64)
    tokens = open_clip.get_tokenizer("open-clip-own")(CAPTIONS[:2])
    ours = get_tokenizer(context_length=77)(CAPTIONS[:2], padding="max_length")
    with torch.no_grad():
        assert (model.encode_image(images, fine=False).global_ - clip.encode_image(images)).abs().max() <= 1e-5
        text = model.encode_text(ours.input_ids, ours.attention_mask, fine=False).global_
        assert (text - clip.encode_text(tokens)).abs().max() <= 1e-5


@pytest.mark.parametrize("change, message", [
    ({"vision_cfg": {"head_width": 0}}, r"vision_cfg.head_width must be a whole number >= 1, got 0"),
    ({"vision_cfg": {"width": "64"}}, r"vision_cfg.width must be a whole number >= 1, got '64'"),
    ({"text_cfg": {"heads": -2}}, r"text_cfg.heads must be a whole number >= 1, got -2"),
    ({"text_cfg": {"mlp_ratio": "4"}}, r"text_cfg.mlp_ratio must be a number > 0, got '4'"),
    ({"vision_cfg": {"width": 96, "head_width": 40}}, r"vision_cfg.width 96 is not a multiple of head_width 40"),
])
def test_an_open_clip_config_with_bad_numbers_is_refused_by_name_with_exit_2(tmp_path, change, message, capsys):
    from safetensors.torch import save_file

    config = {"embed_dim": 48, "vision_cfg": {"image_size": 64, "layers": 2, "width": 96, "head_width": 32, "patch_size": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    for section, values in change.items():
        config[section].update(values)
    (tmp_path / "oc").mkdir()
    (tmp_path / "oc" / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    save_file({"positional_embedding": torch.zeros(77, 64)}, str(tmp_path / "oc" / "open_clip_model.safetensors"))
    with pytest.raises(ValueError, match=message):
        load_model(str(tmp_path / "oc"))
    assert main(["eval", "--model", str(tmp_path / "oc"), "--data", "synthetic", "--size", "4"]) == 2
    assert "open_clip_config.json" in capsys.readouterr().err
