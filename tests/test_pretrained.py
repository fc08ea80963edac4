"""Weights in and out, on tiny random models saved in the real formats (no network)."""

import json
import pickle

import pytest
import torch
from torch import nn

from finelip_kit import FineLIP, create_model, get_tokenizer
from finelip_kit.cli import main as cli_main
from finelip_kit.pretrained import (
    MODULES_FILE,
    convert_state_dict,
    export_clip,
    export_text_encoder,
    read_state_dict,
)

SHORT = ["a red cube", "two blue balls to the left of a green cone", "x"]  # < 20 tokens
LONG = "a small red cube next to a large blue sphere, " * 20  # ~200 tokens


def hf_clip(image=32, patch=8, width=48, depth=2, heads=3, text_width=32, text_depth=2, text_heads=2,
            projection=16, act="quick_gelu", eos_token_id=49407):
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=text_width, intermediate_size=2 * text_width,
                         num_hidden_layers=text_depth, num_attention_heads=text_heads, max_position_embeddings=77,
                         hidden_act=act, eos_token_id=eos_token_id, bos_token_id=49406, pad_token_id=1),
        vision_config=dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=depth,
                           num_attention_heads=heads, image_size=image, patch_size=patch, hidden_act=act),
        projection_dim=projection,
    )
    torch.manual_seed(0)
    return CLIPModel(config).eval()


def open_clip_model(context=77, width=64, image=32, patch=8, embed=32):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    return CLIP(
        embed_dim=embed,
        vision_cfg=CLIPVisionCfg(layers=2, width=width, patch_size=patch, image_size=image, head_width=64),
        text_cfg=CLIPTextCfg(context_length=context, vocab_size=49408, width=width, heads=width // 64, layers=2),
        quick_gelu=True,
    ).eval()


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer(context_length=248)


HF_SHAPES = [
    dict(),
    dict(image=48, patch=16, width=64, depth=1, heads=4, text_width=48, text_depth=3, text_heads=4, projection=24),
    dict(image=32, patch=4, width=32, depth=3, heads=2, projection=8, act="gelu"),
    dict(eos_token_id=2),  # a legacy config: transformers pools at argmax(input_ids)
]


@pytest.mark.parametrize("shape", HF_SHAPES, ids=["base", "wide", "gelu", "legacy-eos"])
@pytest.mark.parametrize("stretch", [dict(), dict(context_length=77, stretch="none")], ids=["248-kps", "77-none"])
def test_from_clip_matches_transformers_features(tmp_path, tok, shape, stretch):
    clip = hf_clip(**shape)
    clip.save_pretrained(tmp_path)
    model = FineLIP.from_clip(str(tmp_path), **stretch).eval()
    assert model.context_length == (77 if stretch else 248)
    size = clip.config.vision_config.image_size
    images = torch.randn(3, 3, size, size)
    texts = tok(SHORT)
    with torch.no_grad():
        hf_image = clip.get_image_features(pixel_values=images).pooler_output
        hf_text = clip.get_text_features(input_ids=texts.input_ids, attention_mask=texts.attention_mask).pooler_output
        ours_image = model.encode_image(images, fine=False).global_
        ours_text = model.encode_text(texts.input_ids, texts.attention_mask, fine=False).global_
    torch.testing.assert_close(ours_image, hf_image, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours_text, hf_text, atol=1e-5, rtol=0)
    table = clip.text_model.embeddings.position_embedding.weight
    assert torch.equal(model.text.position_table[:20], table[:20])
    assert model.logit_scale.item() == pytest.approx(clip.logit_scale.item())
    assert model.config.atrm_k == int((size // clip.config.vision_config.patch_size) ** 2 * 0.2) or model.config.atrm_k == 1


def test_openai_checkpoint_matches_open_clip(tmp_path, tok):
    reference = open_clip_model()
    path = tmp_path / "clip.pt"
    torch.save(reference.state_dict(), path)
    model = FineLIP.from_openai_checkpoint(str(path)).eval()
    assert model.context_length == 248 and model.config.text.heads == 1
    images = torch.randn(2, 3, 32, 32)
    texts = tok(SHORT, context_length=77, padding="max_length")
    zero_padded = texts.input_ids.masked_fill(texts.attention_mask == 0, 0)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images).global_, reference.encode_image(images), atol=1e-5, rtol=0)
        torch.testing.assert_close(
            model.encode_text(texts.input_ids, texts.attention_mask).global_, reference.encode_text(zero_padded),
            atol=1e-5, rtol=0,
        )


def test_longclip_checkpoint_keeps_the_effective_position_table(tmp_path, tok):
    reference = open_clip_model(context=248)
    state = reference.state_dict()
    base, residual = torch.randn(248, 64), torch.randn(248, 64)
    state["positional_embedding"], state["positional_embedding_res"] = base, residual
    effective = torch.cat([base[:20], residual[20:]])
    with torch.no_grad():
        reference.positional_embedding.copy_(effective)
    path = tmp_path / "longclip-B.pt"
    torch.save(state, path)
    model = FineLIP.from_openai_checkpoint(str(path)).eval()
    assert torch.equal(model.text.position_table, effective)
    assert model.context_length == 248
    texts = tok([LONG, "short"], padding="max_length")
    assert texts.num_truncated == 0
    zero_padded = texts.input_ids.masked_fill(texts.attention_mask == 0, 0)
    with torch.no_grad():
        ours = model.encode_text(texts.input_ids, texts.attention_mask).global_
        torch.testing.assert_close(ours, reference.encode_text(zero_padded), atol=1e-5, rtol=0)


def scripted_archive(path, state: dict[str, torch.Tensor]):
    """A TorchScript module archive holding ``state`` as parameters (as OpenAI's releases hold theirs)."""
    import warnings

    class Holder(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Holder()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, Holder())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(root), str(path))
    return path


def test_torchscript_archive_is_read_for_its_state_dict(tmp_path):
    state = open_clip_model().state_dict()
    path = scripted_archive(tmp_path / "ViT-tiny.pt", state)
    loaded = read_state_dict(path)
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    model = FineLIP.from_openai_checkpoint(str(path))
    assert model.context_length == 248


def test_save_pretrained_round_trip_is_bitwise(tmp_path, tok):
    model = create_model("tiny", **{"text.freeze_kept_positions": True})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the init: every tensor must be restored
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    loaded = FineLIP.from_pretrained(str(tmp_path))
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    assert loaded.config == model.config
    assert get_tokenizer(tmp_path).context_length == 248


def test_config_from_another_version_names_the_keys(tmp_path):
    model = create_model("tiny")
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["config"]["margin"]
    saved["config"]["text"]["rope"] = True
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"missing keys \['margin'\]"):
        FineLIP.from_pretrained(str(tmp_path))
    saved["config"]["margin"] = 0.2
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"config.text .*unknown keys \['rope'\]"):
        FineLIP.from_pretrained(str(tmp_path))


def test_weights_of_another_architecture_name_keys_and_shapes(tmp_path):
    create_model("tiny").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["config"]["embed_dim"] = 32
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"model.safetensors does not fit .*text.projection.weight: checkpoint \(64, 96\) vs model \(32, 96\)"):
        FineLIP.from_pretrained(str(tmp_path))


def test_export_text_encoder_loads_in_transformers(tmp_path, tok):
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    model = create_model("tiny").eval()
    export_text_encoder(model, tmp_path)
    hf = CLIPTextModelWithProjection.from_pretrained(str(tmp_path)).eval()
    hf_tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf.config.max_position_embeddings == 248 and hf_tok.model_max_length == 248
    assert CLIPTextModel.from_pretrained(str(tmp_path)).config.max_position_embeddings == 248
    captions = [LONG, "a red cube"]
    inputs = hf_tok(captions, padding="max_length", max_length=248, truncation=True, return_tensors="pt")
    ours_inputs = tok(captions, padding="max_length")
    assert torch.equal(inputs.input_ids, ours_inputs.input_ids)
    assert ours_inputs.lengths[0] > 190
    with torch.no_grad():
        exported = hf(**inputs).text_embeds
        ours = model.encode_text(ours_inputs.input_ids, ours_inputs.attention_mask).global_
    torch.testing.assert_close(exported, ours, atol=1e-5, rtol=0)


def test_export_clip_round_trips_through_transformers(tmp_path, tok):
    from transformers import CLIPModel

    model = create_model("tiny").eval()
    with torch.no_grad():
        model.image_atrm.scale.fill_(3.0)
    export_clip(model, tmp_path)
    assert (tmp_path / MODULES_FILE).is_file()
    hf = CLIPModel.from_pretrained(str(tmp_path)).eval()
    images = torch.randn(2, 3, 64, 64)
    texts = tok([LONG, "a red cube"], padding="max_length")
    with torch.no_grad():
        torch.testing.assert_close(hf.get_image_features(pixel_values=images).pooler_output,
                                   model.encode_image(images).global_, atol=1e-5, rtol=0)
        torch.testing.assert_close(hf.get_text_features(input_ids=texts.input_ids).pooler_output,
                                   model.encode_text(texts.input_ids, texts.attention_mask).global_, atol=1e-5, rtol=0)
    restored = FineLIP.from_clip(str(tmp_path)).eval()
    assert restored.config.atrm_k == model.config.atrm_k and restored.image_atrm.scale.item() == 3.0
    with torch.no_grad():
        a = model.similarity(model.encode_image(images), model.encode_text(texts.input_ids, texts.attention_mask), "fine")
        b = restored.similarity(restored.encode_image(images), restored.encode_text(texts.input_ids, texts.attention_mask), "fine")
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_timm_clip_vit_weights_for_the_image_tower(tmp_path, tok):
    clip = hf_clip()
    clip.save_pretrained(tmp_path / "hf")
    visual = open_clip_model(width=64, image=224, patch=16, embed=16)
    weights = tmp_path / "visual.pt"
    torch.save(visual.state_dict(), weights)
    architecture = dict(depth=2, embed_dim=64, num_heads=1)
    model = FineLIP.from_clip(
        str(tmp_path / "hf"), vision_timm=("vit_base_patch16_clip_quickgelu_224", str(weights), architecture)
    ).eval()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images).global_, visual.encode_image(images), atol=1e-5, rtol=0)
    assert model.config.vision.timm_name == "vit_base_patch16_clip_quickgelu_224"
    assert model.config.vision.image_size == 224 and model.config.vision.depth == 2
    model.save_pretrained(tmp_path / "saved")
    restored = FineLIP.from_pretrained(str(tmp_path / "saved")).eval()
    with torch.no_grad():
        torch.testing.assert_close(restored.encode_image(images).global_, visual.encode_image(images), atol=1e-5, rtol=0)


def test_cli_export_text_encoder(tmp_path):
    from transformers import CLIPTextModelWithProjection

    hf_clip().save_pretrained(tmp_path / "hf")
    assert cli_main(["export", "--from", str(tmp_path / "hf"), "--to", str(tmp_path / "text"), "--what", "text"]) == 0
    assert CLIPTextModelWithProjection.from_pretrained(str(tmp_path / "text")).config.max_position_embeddings == 248
    assert cli_main(["export", "--from", str(tmp_path / "hf"), "--to", str(tmp_path / "kit"), "--what", "finelip"]) == 0
    assert cli_main(["export", "--from", str(tmp_path / "kit"), "--to", str(tmp_path / "clip"), "--what", "clip"]) == 0
    assert (tmp_path / "clip" / "config.json").is_file()


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_with_arbitrary_objects_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(2), "payload": _Payload(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused to load .*evil.pt.*Python objects other than tensors"):
        read_state_dict(evil)
    assert not marker.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ValueError, match="plain.pkl"):
        FineLIP.from_openai_checkpoint(str(plain))
    assert not marker.exists()


def test_missing_truncated_and_foreign_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        read_state_dict(tmp_path / "nothing.pt")
    path = tmp_path / "clip.pt"
    torch.save(open_clip_model().state_dict(), path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="could not read checkpoint .*truncated.pt.*truncated"):
        read_state_dict(truncated)
    with pytest.raises(OSError, match="could not load a transformers CLIPModel from .*empty"):
        (tmp_path / "empty").mkdir()
        FineLIP.from_clip(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="empty/config.json' does not exist: a finelip-kit checkpoint directory"):
        FineLIP.from_pretrained(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="unrecognised checkpoint layout"):
        convert_state_dict({"foo.weight": torch.zeros(1)})


def test_wrong_architecture_openai_checkpoint_names_the_tensor(tmp_path):
    state = open_clip_model().state_dict()
    state["transformer.resblocks.1.mlp.c_fc.weight"] = torch.zeros(200, 64)
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"odd.pt does not fit this architecture: shape mismatches: text.transformer.encoder.layers.1.mlp.fc1.weight: checkpoint \(200, 64\) vs model \(256, 64\)$"):
        FineLIP.from_openai_checkpoint(str(path))
