"""Security: no code runs from a weights file, nothing a user names writes or deletes outside
its results folder. Every payload here would create a marker file if anything executed it."""

import json
import pathlib
import pickle
import shutil
import warnings
import zipfile

import pytest
import torch
from torch import nn

from finelip_kit import FineLIP, create_model
from finelip_kit.cli import main as cli_main
from finelip_kit.paths import RUN_MARKER, check_name, owned_run_folder
from finelip_kit.pretrained import load_model, read_state_dict
from finelip_kit.torchscript import UnsafeArchiveError, read_torchscript_state_dict


class Payload:
    """Unpickling this creates ``path``: proof that code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


# ----------------------------------------------------------------------------- payload files
def pickle_pt(tmp_path, marker):
    path = tmp_path / "evil.pt"
    torch.save({"visual.conv1.weight": torch.zeros(2), "payload": Payload(str(marker))}, path)
    return path


def torchscript_pt(tmp_path, marker):
    """A real TorchScript archive whose data.pkl is swapped for one carrying the payload."""
    from test_pretrained import scripted_archive

    path = scripted_archive(tmp_path / "evil-jit.pt", {"visual.conv1.weight": torch.zeros(2)})
    with zipfile.ZipFile(path) as source:
        entries = {name: source.read(name) for name in source.namelist()}
    data = next(name for name in entries if name.endswith("/data.pkl"))
    entries[data] = pickle.dumps(Payload(str(marker)), protocol=2)
    with zipfile.ZipFile(path, "w") as target:
        for name, content in entries.items():
            target.writestr(name, content)
    return path


def pickle_renamed_safetensors(tmp_path, marker):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"w": Payload(str(marker))}))
    return path


FILE_PAYLOADS = [pickle_pt, torchscript_pt, pickle_renamed_safetensors]
FILE_ENTRY_POINTS = {
    "read_state_dict": lambda path, tmp: read_state_dict(path),
    "load_model": lambda path, tmp: load_model(str(path)),
    "FineLIP.from_openai_checkpoint": lambda path, tmp: FineLIP.from_openai_checkpoint(str(path)),
    "finelip eval": lambda path, tmp: cli_main(["eval", "--model", str(path), "--data", "synthetic", "--size", "8"]),
    "finelip export": lambda path, tmp: cli_main(["export", "--from", str(path), "--to", str(tmp / "out")]),
}


def refused(call) -> None:
    """``call`` fails: an exception, or a CLI exit status that is not 0."""
    try:
        status = call()
    except (ValueError, OSError, RuntimeError) as error:
        assert str(error), "an error must say what was wrong"
        return
    assert status not in (0, None), "a payload file was accepted"


@pytest.mark.parametrize("payload", FILE_PAYLOADS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("entry", sorted(FILE_ENTRY_POINTS))
def test_payload_files_are_refused_by_every_loading_entry_point_and_run_nothing(tmp_path, payload, entry):
    marker = tmp_path / "pwned"
    path = payload(tmp_path, marker)
    refused(lambda: FILE_ENTRY_POINTS[entry](path, tmp_path))
    assert not marker.exists()


def test_refusals_say_what_was_found(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError, match=r"refused to load TorchScript archive .*evil-jit.pt.*asks for __builtin__.getattr"):
        read_state_dict(torchscript_pt(tmp_path, marker))
    with pytest.raises(ValueError, match=r"evil.safetensors.*not a valid safetensors file"):
        read_state_dict(pickle_renamed_safetensors(tmp_path, marker))
    assert not marker.exists()


def test_a_torchscript_setstate_runs_under_torch_jit_load_but_not_here(tmp_path, capfd):
    class Evil(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]):
            print("PAYLOAD-RAN")
            self.w = state[0]
            self.training = state[1]

        def forward(self, x):
            return x * self.w

    path = tmp_path / "evil.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(Evil()), str(path))
        torch.jit.load(str(path))  # what the kit used to call
    assert "PAYLOAD-RAN" in capfd.readouterr().out
    with pytest.raises(UnsafeArchiveError, match=r"__torch__.*Evil carries a custom state"):
        read_torchscript_state_dict(path)
    with pytest.raises(ValueError, match="refused to load TorchScript archive"):
        load_model(str(path))
    assert "PAYLOAD-RAN" not in capfd.readouterr().out


def test_a_plain_torchscript_archive_reads_exactly_its_state_dict(tmp_path):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.register_buffer("buf", torch.arange(4.0))
            self.attn_mask = torch.zeros(2, 2)  # a plain attribute: not in the state dict

        def forward(self, x):
            return self.lin(x) + self.attn_mask.sum()

    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(Block(), Block())
            self.positional_embedding = nn.Parameter(torch.randn(5, 3).half())

        def forward(self, x):
            return self.blocks(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for kind, build in (("script", lambda m: torch.jit.script(m)), ("trace", lambda m: torch.jit.trace(m, torch.randn(1, 3)))):
            path = tmp_path / f"{kind}.pt"
            torch.jit.save(build(Root()), str(path))
            reference = torch.jit.load(str(path)).state_dict()
            ours = read_state_dict(path)
            assert sorted(ours) == sorted(reference) == sorted(Root().state_dict())
            assert all(torch.equal(ours[k], reference[k]) and ours[k].dtype == reference[k].dtype for k in reference)


def test_a_hf_directory_with_a_pickle_payload_runs_nothing(tmp_path):
    from test_pretrained import hf_clip

    folder = tmp_path / "hf"
    hf_clip().save_pretrained(str(folder))
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    marker = tmp_path / "pwned"
    torch.save({"payload": Payload(str(marker))}, folder / "pytorch_model.bin")
    for call in (lambda: load_model(str(folder)), lambda: FineLIP.from_clip(str(folder)),
                 lambda: cli_main(["export", "--from", str(folder), "--to", str(tmp_path / "out")])):
        refused(call)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:.torch.load. received a zip file")
def test_a_timm_weights_file_with_a_payload_runs_nothing(tmp_path):
    from finelip_kit.pretrained import timm_vision_tower

    marker = tmp_path / "pwned"
    for path in (pickle_pt(tmp_path, marker), torchscript_pt(tmp_path, marker)):
        refused(lambda: timm_vision_tower("vit_base_patch16_clip_224", path, embed_dim=16,
                                          architecture={"depth": 1, "embed_dim": 64, "num_heads": 2, "img_size": 32}))
    assert not marker.exists()


def test_a_kit_directory_whose_weights_are_a_pickle_runs_nothing(tmp_path):
    folder = tmp_path / "model"
    create_model("tiny").save_pretrained(str(folder), tokenizer=False)
    marker = tmp_path / "pwned"
    (folder / "model.safetensors").write_bytes(pickle.dumps({"w": Payload(str(marker))}))
    for call in (lambda: FineLIP.from_pretrained(str(folder)), lambda: load_model(str(folder)),
                 lambda: cli_main(["eval", "--model", str(folder), "--data", "synthetic", "--size", "8"])):
        refused(call)
    assert not marker.exists()


def test_a_trainer_state_with_a_payload_is_refused_on_resume(tmp_path):
    from finelip_kit.data import SyntheticConfig, SyntheticScenes
    from finelip_kit.train import STATE_FILE, Trainer, TrainConfig, latest_checkpoint

    def trainer(**options):
        model = create_model("tiny", **{"vision.image_size": 32, "atrm_k": 4, "loss": "global"})
        data = SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=32)
        return Trainer(model, data, TrainConfig(out_dir=str(tmp_path / "run"), steps=1, batch_size=8, progress=False,
                                                 warmup_steps=0, **options))

    trainer().fit()
    marker = tmp_path / "pwned"
    state = latest_checkpoint(tmp_path / "run") / STATE_FILE
    torch.save({"step": 1, "payload": Payload(str(marker))}, state)
    with pytest.raises(ValueError, match=r"refused to load .*trainer_state.pt"):
        trainer(resume="latest").fit()
    assert not marker.exists()


def test_integer_weights_are_refused_by_name(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "model"
    model = create_model("tiny")
    model.save_pretrained(str(folder), tokenizer=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["logit_scale"] = torch.tensor(4, dtype=torch.int32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"non-floating-point weights .*logit_scale: checkpoint torch.int32"):
        FineLIP.from_pretrained(str(folder))


# ----------------------------------------------------------------------------- names and folders
@pytest.mark.parametrize("name, problem", [
    ("../x", "path separator"), ("/some/dir", "path separator"), ("a/b", "path separator"), ("..", "names a folder"),
    (".", "names a folder"), (".hidden", "starts with"), ("-rf", "starts with"), ("a b", r"characters \[' '\]"),
    ("x" * 201, "201 bytes long"), ("", "non-empty"), ("nul\x00byte", "characters"), ("back\\slash", "path separator"),
])
def test_unsafe_names_are_refused_with_the_reason(name, problem):
    with pytest.raises(ValueError, match=problem):
        check_name(name)


def test_the_grid_notebooks_run_name_cannot_leave_the_results_folder(tmp_path):
    from finelip_kit.ablation import validate_parameters

    for bad in ("../escape", str(tmp_path / "victim"), "a/b"):
        with pytest.raises(ValueError, match="parameter run_name .* is refused: it holds a path separator"):
            validate_parameters(run_name=bad, results_dir=str(tmp_path / "results"))


def test_a_folder_the_kit_did_not_create_is_never_taken_over(tmp_path):
    from finelip_kit.ablation import run_point, validate_parameters

    victim = tmp_path / "results" / "mine"
    (victim / "checkpoints").mkdir(parents=True)
    (victim / "checkpoints" / "precious.txt").write_text("keep me")
    params = validate_parameters(run_name="mine", results_dir=str(tmp_path / "results"), steps=1, batch_size=8,
                                 eval_size=8, progress=False)
    with pytest.raises(FileExistsError, match="was not created by finelip-kit"):
        run_point(params)
    assert (victim / "checkpoints" / "precious.txt").read_text() == "keep me"
    fresh = owned_run_folder(tmp_path / "results" / "new")
    assert (fresh / RUN_MARKER).is_file() and owned_run_folder(fresh) == fresh


def test_a_grid_spec_name_cannot_leave_the_runs_folder(tmp_path):
    (tmp_path / "grids").mkdir()
    spec = tmp_path / "grids" / "g.yaml"
    spec.write_text("name: ../../x\npoints:\n  - {}\n")
    assert cli_main(["grid", str(spec), "--dry-run"]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_cli_errors_print_no_traceback(tmp_path, capsys):
    spec = tmp_path / "g.yaml"
    spec.write_text("name: ../../x\n")
    assert cli_main(["grid", str(spec), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "grid name '../../x' is refused" in err and "Traceback" not in err
    shutil.rmtree(tmp_path)


# ----------------------------------------------------------------------------- archives built to exhaust memory or crash
def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(value: str) -> bytes:
    data = value.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def _int(value: int) -> bytes:
    return b"J" + value.to_bytes(4, "little", signed=True)


def tensor_pickle(size: tuple, stride: tuple, numel: int) -> bytes:
    """The opcodes of ``data.pkl`` for a module ``__torch__.Root`` holding one float tensor ``w``
    of ``size`` and ``stride`` on storage ``0`` of ``numel`` elements (as torch.jit.save writes them)."""
    storage = b"(" + _text("storage") + _global("torch", "FloatStorage") + _text("0") + _text("cpu") + _int(numel) + b"tQ"
    dims = lambda values: b"(" + b"".join(_int(v) for v in values) + b"t"  # noqa: E731
    tensor = (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + _int(0) + dims(size) + dims(stride)
              + b"\x89" + _global("collections", "OrderedDict") + b")R" + b"tR")
    return b"\x80\x02" + _global("__torch__", "Root") + b")\x81" + b"}" + _text("w") + tensor + b"sb."


def crafted_archive(path, data_pkl: bytes, records: dict[str, bytes], code: str = 'class Root(Module):\n  __parameters__ = ["w", ]\n',
                    compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/code/__torch__.py", code)
        archive.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
        for name, data in records.items():
            archive.writestr(f"archive/data/{name}", data)
    return path


def test_the_crafted_archive_helper_makes_an_archive_the_reader_accepts(tmp_path):
    path = crafted_archive(tmp_path / "ok.pt", tensor_pickle((2, 2), (2, 1), 4),
                           {"0": torch.arange(4.0).numpy().tobytes()})
    state = read_torchscript_state_dict(path)
    assert list(state) == ["w"] and torch.equal(state["w"], torch.arange(4.0).reshape(2, 2))


def test_a_compressed_record_that_would_expand_like_a_bomb_is_refused_before_it_is_read(tmp_path):
    zeros = bytes(64 << 20)  # 64 MiB of zeros deflate to about 64 KB: 1000x (a 1 MB archive of this kind holds 1 GiB)
    path = crafted_archive(tmp_path / "bomb.pt", tensor_pickle((4,), (1,), 4), {"0": zeros}, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(UnsafeArchiveError, match=r"record 'archive/data/0' would decompress from [\d,]+ to 67,108,864 "
                                                 r"bytes \(more than 16x\): a decompression bomb"):
        read_torchscript_state_dict(path)
    with pytest.raises(ValueError, match="refused to load TorchScript archive .*decompression bomb"):
        read_state_dict(path)


def test_a_stride_0_tensor_cannot_turn_four_stored_bytes_into_a_gigabyte(tmp_path):
    path = crafted_archive(tmp_path / "stride0.pt", tensor_pickle((2 ** 28,), (0,), 1), {"0": bytes(4)})
    assert path.stat().st_size < 2000
    with pytest.raises(UnsafeArchiveError, match=r"tensor of size \(268435456,\) \(268435456 elements\) repeats its "
                                                 r"storage of 1 stored elements"):
        read_torchscript_state_dict(path)
    negative = crafted_archive(tmp_path / "negative.pt", tensor_pickle((4,), (-1,), 4), {"0": bytes(16)})
    with pytest.raises(UnsafeArchiveError, match="malformed tensor record"):
        read_torchscript_state_dict(negative)


@pytest.mark.parametrize("opcodes, message", [
    # a __torch__ class called with arguments (REDUCE), not restored (NEWOBJ + BUILD)
    (b"\x80\x02" + _global("__torch__", "Root") + b"(" + _int(1) + b"tR.", "calls class __torch__.Root with arguments"),
    (b"\x80\x02" + _global("torch", "FloatStorage") + b"(" + _int(5) + b"tR.", r"calls torch.FloatStorage\(...\)"),
    (b"\x80\x02" + _global("__torch__", "Root") + b")\x81" + _int(3) + b"b.", "carries a custom state"),
    (b"\x80\x02" + b"t.", "data.pkl is malformed"),  # a TUPLE with no MARK
    (b"\x80\x02" + _global("__torch__", "Root"), "data.pkl is malformed"),  # cut short
])
def test_malformed_or_calling_pickles_are_refused_by_name_not_a_traceback(tmp_path, opcodes, message):
    path = crafted_archive(tmp_path / "bad.pt", opcodes, {})
    with pytest.raises(UnsafeArchiveError, match=message):
        read_torchscript_state_dict(path)
    assert cli_main(["eval", "--model", str(path), "--data", "synthetic", "--size", "8"]) == 2


def test_a_code_file_built_to_exhaust_the_parser_is_read_as_text_only(tmp_path):
    code = "class Root(Module):\n  __parameters__ = [" + "-" * 100_000 + "1]\n"  # ast.literal_eval: MemoryError
    path = crafted_archive(tmp_path / "minus.pt", tensor_pickle((2,), (1,), 2), {"0": bytes(8)}, code=code)
    assert list(read_torchscript_state_dict(path)) == ["w"]  # unreadable listing: every tensor attribute kept


def test_planted_links_at_the_old_fixed_temporary_names_redirect_no_checkpoint_or_log_write(tmp_path):
    import os

    from finelip_kit.data import SyntheticConfig, SyntheticScenes
    from finelip_kit.train import Trainer, TrainConfig, latest_checkpoint
    from finelip_kit.train.checkpoint import trim_log

    victim_dir, victim_file = tmp_path / "victim_dir", tmp_path / "victim.txt"
    victim_dir.mkdir()
    victim_file.write_text("precious")
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for step in range(3):  # the names the trainer used to open: .tmp_step_<step>_<pid>
        (checkpoints / f".tmp_step_{step:07d}_{os.getpid()}").symlink_to(victim_dir)
    model = create_model("tiny", **{"vision.image_size": 32, "atrm_k": 4, "loss": "global"})
    data = SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=32)
    Trainer(model, data, TrainConfig(out_dir=str(tmp_path / "run"), steps=2, batch_size=8, progress=False,
                                     warmup_steps=0)).fit()
    assert list(victim_dir.iterdir()) == [] and latest_checkpoint(tmp_path / "run").name == "step_0000002"
    log = tmp_path / "run" / "metrics.jsonl"
    (log.parent / f".{log.name}.{os.getpid()}.tmp").symlink_to(victim_file)  # trim_log's old fixed name
    trim_log(log, 1)
    assert victim_file.read_text() == "precious"
    assert all(json.loads(line)["step"] <= 1 for line in log.read_text().splitlines())


def test_what_the_kit_writes_is_whole_or_absent_and_as_readable_as_a_plain_open_would_make_it(tmp_path):
    import os

    from finelip_kit.data import SyntheticConfig, SyntheticScenes
    from finelip_kit.data.shards import write_shards
    from finelip_kit.experiments.records import write_record
    from finelip_kit.files import atomic_file, exclusive_folder
    from finelip_kit.train.checkpoint import trim_log

    previous = os.umask(0o027)
    try:
        with atomic_file(tmp_path / "a.txt") as file:
            file.write("first")
        with pytest.raises(RuntimeError, match="mid-write"):
            with atomic_file(tmp_path / "a.txt") as file:
                file.write("half")
                raise RuntimeError("mid-write")
        assert (tmp_path / "a.txt").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600: the umask's
        assert exclusive_folder(tmp_path, ".tmp_").stat().st_mode & 0o777 == 0o750
        os.umask(0o022)
        record = write_record({"run_name": "r", "status": "ok"}, tmp_path / "results")
        log = tmp_path / "metrics.jsonl"
        log.write_text('{"step": 1}\n{"step": 2}\n')
        os.chmod(log, 0o600)
        trim_log(log, 1)
        report = write_shards(SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=4), tmp_path / "shards",
                              shard_size=2)
        assert log.read_text() == '{"step": 1}\n' and log.stat().st_mode & 0o777 == 0o600  # a replaced file keeps its mode
        written = [record, *sorted(pathlib.Path(report.out).iterdir())]
        assert len(written) == 4 and all(p.stat().st_mode & 0o777 == 0o644 for p in written), \
            {p.name: oct(p.stat().st_mode & 0o777) for p in written}
        with pytest.raises(ValueError, match="mode must be 'w' or 'wb', got 'a'"):
            with atomic_file(tmp_path / "b.txt", "a"):
                pass
    finally:
        os.umask(previous)
