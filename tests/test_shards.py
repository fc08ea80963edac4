"""webdataset shards: writing (open_clip's layout, the images' own bytes), naming, reading what
other tools wrote, bad samples counted, the epoch split over ranks and workers exactly once,
resume, and training on shards."""

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from finelip_kit import create_model
from finelip_kit.cli import main as cli
from finelip_kit.data import SyntheticConfig, SyntheticScenes, load_pairs, write_jsonl
from finelip_kit.data.shards import MANIFEST, ShardEpoch, ShardPairs, expand_urls, window_order, write_shards
from finelip_kit.train import TrainConfig, Trainer

SMALL = {"vision.image_size": 32, "text.context_length": 200, "atrm_k": 4}


def scenes(size, split="train"):
    return SyntheticScenes(SyntheticConfig(image_size=32), split=split, size=size)


def keys_of(records):
    return [r["image_key"] for r in records]


def jpeg_pairs(tmp_path, n=6):
    """Own data on disk as JPEG files + JSONL (what a user shards)."""
    rows = []
    for i in range(n):
        Image.new("RGB", (20 + i, 16), (10 * i, 80, 200 - 10 * i)).save(tmp_path / f"img{i}.jpg", quality=90)
        rows.append({"image": f"img{i}.jpg", "caption": f"caption   number {i}. a second sentence.", "image_id": f"k{i}"})
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return load_pairs(tmp_path / "pairs.jsonl")


def test_shards_hold_the_images_own_bytes_in_open_clips_layout(tmp_path):
    pairs = jpeg_pairs(tmp_path)
    report = write_shards(pairs, tmp_path / "shards", shard_size=4)
    assert (report.pairs, report.shards, report.reencoded) == (6, 2, 0)
    with tarfile.open(tmp_path / "shards" / "000000.tar") as tar:
        names = tar.getnames()
        assert names[:3] == ["000000000.jpg", "000000000.txt", "000000000.json"] and len(names) == 12
        assert tar.extractfile("000000001.jpg").read() == (tmp_path / "img1.jpg").read_bytes()  # not re-encoded
        assert tar.extractfile("000000001.txt").read().decode() == "caption number 1. a second sentence."
        meta = json.loads(tar.extractfile("000000001.json").read())
        assert meta == {"short_caption": "caption number 1.", "image_id": 1, "image_key": "k1"}
        assert {m.mtime for m in tar.getmembers()} == {0}
    manifest = json.loads((tmp_path / "shards" / MANIFEST).read_text())
    assert [(s["name"], s["count"]) for s in manifest["shards"]] == [("000000.tar", 4), ("000001.tar", 2)]
    # reproducible: the same pairs give the same bytes
    digest = hashlib.sha256((tmp_path / "shards" / "000000.tar").read_bytes()).hexdigest()
    write_shards(pairs, tmp_path / "again", shard_size=4)
    assert hashlib.sha256((tmp_path / "again" / "000000.tar").read_bytes()).hexdigest() == digest
    # read back: every record as load_pairs gave it
    shards = load_pairs(f"wds:{tmp_path}/shards/{{000000..000001}}.tar")
    assert isinstance(shards, ShardPairs) and len(shards) == 6 and shards.protocol == "pairs.jsonl"
    for i, record in enumerate(shards):
        original = pairs[i]
        assert record["caption"] == original["caption"] and record["image_id"] == original["image_id"]
        assert (np.asarray(record["image"]) == np.asarray(original["image"])).all()
    taken = shards.take(4)
    assert len(taken) == 4 and taken.protocol == "pairs.jsonl[:4 pairs]" and taken[3]["caption"] == pairs[3]["caption"]
    resharded = write_shards(shards, tmp_path / "resharded", shard_size=3)  # shards in, shards out: bytes kept
    assert (resharded.pairs, resharded.shards, resharded.reencoded) == (6, 2, 0)
    with tarfile.open(tmp_path / "resharded" / "000001.tar") as tar:
        assert tar.extractfile("000000004.jpg").read() == (tmp_path / "img4.jpg").read_bytes()
    with pytest.raises(IndexError, match="position 6 out of range for 6 pairs"):
        shards[6]


def test_webdatasets_own_reader_reads_the_kits_shards(tmp_path):
    webdataset = pytest.importorskip("webdataset")
    write_shards(scenes(10), tmp_path, shard_size=4)
    samples = list(webdataset.WebDataset(f"{tmp_path}/{{000000..000002}}.tar", shardshuffle=False)
                   .decode("pil").to_tuple("png", "txt", "json"))
    assert len(samples) == 10
    for i, (image, caption, meta) in enumerate(samples):
        record = scenes(10)[i]
        assert caption == record["caption"] and meta["group"] == record["group"] and meta["image_id"] == i
        assert (np.asarray(image.convert("RGB")) == np.asarray(record["image"])).all()


def test_shard_names_expand_as_webdataset_names_them(tmp_path):
    write_shards(scenes(12), tmp_path, shard_size=4)
    assert [p.name for p in expand_urls(f"wds:{tmp_path}/{{000000..000002}}.tar")] == ["000000.tar", "000001.tar", "000002.tar"]
    assert [p.name for p in expand_urls(f"wds:{tmp_path}/{{000002,000000}}.tar")] == ["000002.tar", "000000.tar"]
    assert [p.name for p in expand_urls(f"wds:{tmp_path}")] == ["000000.tar", "000001.tar", "000002.tar"]
    assert len(load_pairs(f"wds:{tmp_path}/000001.tar")) == 4
    with pytest.raises(FileNotFoundError, match=r"1 of 4 shards named by .* do not exist, e.g. .*000003.tar"):
        load_pairs(f"wds:{tmp_path}/{{000000..000003}}.tar")
    with pytest.raises(ValueError, match="runs backwards"):
        expand_urls(f"wds:{tmp_path}/{{000003..000000}}.tar")
    with pytest.raises(ValueError, match="split='test' does not apply"):
        load_pairs(f"wds:{tmp_path}", split="test")
    with pytest.raises(FileNotFoundError, match="holds no .tar shards"):
        load_pairs(f"wds:{tmp_path / 'nothing'}" if (tmp_path / "nothing").mkdir() is None else "")


def test_writing_refuses_to_mix_with_earlier_shards_and_removes_only_its_own_files(tmp_path):
    write_shards(scenes(8), tmp_path, shard_size=4)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "other.tar").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="already holds shards .* pass overwrite=True"):
        write_shards(scenes(8), tmp_path, shard_size=4)
    write_shards(scenes(4), tmp_path, shard_size=4, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000.tar", "notes.txt", "other.tar", MANIFEST]
    with pytest.raises(ValueError, match="shard_size must be a positive integer, got 0"):
        write_shards(scenes(4), tmp_path / "x", shard_size=0)


def foreign_shard(path, samples):
    """A shard as img2dataset / webdataset's TarWriter write it (no manifest): ``samples`` =
    (key, {extension: bytes})."""
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for extension, data in members.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def png(colour=(1, 2, 3)):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_shards_from_other_tools_are_scanned_and_bad_samples_counted_never_dropped_silently(tmp_path):
    good = [(f"s{i}", {"jpg": png((i, 0, 0)), "txt": f"caption {i}".encode()}) for i in range(5)]
    bad = [("nocap", {"jpg": png()}), ("noimg", {"txt": b"orphan"}), ("broken", {"jpg": b"\xff\xd8 garbage", "txt": b"x"}),
           ("latin", {"png": png(), "txt": "caf\xe9".encode("latin-1")})]
    foreign_shard(tmp_path / "a.tar", good[:3] + bad[:2])
    foreign_shard(tmp_path / "b.tar", good[3:] + bad[2:])
    with pytest.raises(ValueError, match=r"a.tar'? sample 'nocap': sample has no caption member"):
        load_pairs(f"wds:{tmp_path}/{{a,b}}.tar")
    shards = load_pairs(f"wds:{tmp_path}/{{a,b}}.tar", on_error="skip")
    assert len(shards) == 5 and shards.report.skipped == 4
    assert shards.report.reasons == Counter({"sample has no caption member (.txt)": 1,
                                             "sample has no image member (.jpg/.jpeg/.png/.webp)": 1,
                                             "sample unreadable (image, caption or json)": 2})
    assert [r["caption"] for r in shards] == [f"caption {i}" for i in range(5)]
    assert [r["image_id"] for r in shards] == [0, 1, 2, 3, 4] and keys_of(shards)[3] == "s3"
    # verify="none": only the structure is checked; a corrupt image fails when read, naming it
    unverified = load_pairs(f"wds:{tmp_path}/b.tar", on_error="skip", verify="none")
    assert len(unverified) == 4 and unverified.report.skipped == 0
    with pytest.raises(ValueError, match=r"b.tar sample 'broken'.*could not be decoded"):
        list(unverified)
    (tmp_path / "cut.tar").write_bytes((tmp_path / "a.tar").read_bytes()[:700])
    with pytest.raises(ValueError, match="cut.tar' is not a readable tar file"):
        load_pairs(f"wds:{tmp_path}/cut.tar")


def test_a_shard_changed_after_writing_is_caught(tmp_path):
    write_shards(scenes(8), tmp_path, shard_size=4)
    foreign_shard(tmp_path / "000001.tar", [("x", {"png": png(), "txt": b"one"})])
    shards = load_pairs(f"wds:{tmp_path}")  # the manifest no longer matches shard 1's size: scanned
    assert shards.counts == [4, 1]
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["shards"][1]["bytes"] = (tmp_path / "000001.tar").stat().st_size  # a stale manifest that lies
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    lying = load_pairs(f"wds:{tmp_path}")
    with pytest.raises(ValueError, match="holds 1 samples, its manifest says 4"):
        lying.record(5)


def test_window_order_is_a_permutation_within_the_buffer():
    order = window_order(1000, 64, seed=3)
    assert sorted(order) == list(range(1000)) and order != list(range(1000))
    assert all(position < slot + 64 for slot, position in enumerate(order))  # emitted only after it arrived
    assert window_order(10, 1, seed=3) == list(range(10)) and window_order(1000, 64, seed=3) == order


def epoch_keys(shards, epoch, world, workers, batch_size=4, start_batch=0, buffer=8, seed=5):
    """Each rank's batches of one epoch through a real DataLoader with ``workers`` processes."""
    ranks = []
    for rank in range(world):
        stream = ShardEpoch(shards, batch_size, epoch=epoch, seed=seed, rank=rank, world_size=world,
                            start_batch=start_batch, shuffle_buffer=buffer)
        loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=keys_of)
        ranks.append(list(loader))
    return ranks


def test_two_ranks_by_two_workers_see_every_sample_exactly_once_per_epoch(tmp_path):
    write_shards(scenes(48), tmp_path, shard_size=7)  # 7 shards, the last one short
    shards = load_pairs(f"wds:{tmp_path}")
    everything = sorted(keys_of(shards))
    epochs = []
    for epoch in (0, 1):
        ranks = epoch_keys(shards, epoch, world=2, workers=2)
        assert [len(r) for r in ranks] == [6, 6] and all(len(b) == 4 for r in ranks for b in r)
        seen = [key for r in ranks for batch in r for key in batch]
        assert sorted(seen) == everything  # 48 = 6 batches x 4 x 2 ranks: each exactly once
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # shard order and window reshuffled per epoch
    # the batches do not depend on the number of workers
    assert epoch_keys(shards, 0, world=2, workers=0) == epoch_keys(shards, 0, world=2, workers=2)


@pytest.mark.slow
def test_the_trainers_batches_under_torchrun_with_two_ranks_and_two_workers_cover_the_epoch_once(tmp_path):
    worker = Path(__file__).with_name("shard_worker.py")
    write_shards(scenes(48), tmp_path / "shards", shard_size=7)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(worker), str(tmp_path / "shards"), str(tmp_path / "epoch"), "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    epochs = []
    for epoch in (0, 1):
        ranks = json.loads((tmp_path / f"epoch{epoch}.json").read_text())
        assert [len(batches) for batches in ranks] == [6, 6] and all(len(b) == 4 for r in ranks for b in r)
        ids = [i for batches in ranks for batch in batches for i in batch]
        assert sorted(ids) == list(range(48))  # every sample exactly once across 2 ranks x 2 workers
        epochs.append(ranks)
    assert epochs[0] != epochs[1]
    in_process = epoch_keys(load_pairs(f"wds:{tmp_path}/shards"), 0, world=2, workers=0, seed=0)  # the trainer's seed
    assert epochs[0] == [[[int(key) for key in batch] for batch in rank] for rank in in_process]


def test_a_remainder_is_left_out_counted_and_differs_by_epoch(tmp_path):
    write_shards(scenes(50), tmp_path, shard_size=7)
    shards = load_pairs(f"wds:{tmp_path}")
    left_out = []
    for epoch in range(4):
        ranks = epoch_keys(shards, epoch, world=2, workers=2)
        seen = [key for r in ranks for batch in r for key in batch]
        assert len(seen) == len(set(seen)) == 48
        left_out.append(set(keys_of(shards)) - set(seen))
    assert ShardEpoch(shards, 4, world_size=2).dropped_per_epoch == 2 and all(len(s) == 2 for s in left_out)
    assert len(set(map(frozenset, left_out))) > 1
    with pytest.raises(ValueError, match="50 training pairs in the shards are fewer than one global batch"):
        ShardEpoch(shards, 32, world_size=2)


def test_a_rank_indexes_its_own_shards_once_for_its_workers(tmp_path):
    write_shards(scenes(48), tmp_path, shard_size=7)
    shards = load_pairs(f"wds:{tmp_path}")
    assert shards._indexes == {}  # the manifest's counts: nothing scanned at load
    stream = ShardEpoch(shards, 4, epoch=0, seed=5, rank=0, world_size=2)
    needed = stream.index_shards()
    ranges = [(int(shards.starts[s]), int(shards.starts[s + 1])) for s in needed]
    assert sorted(shards._indexes) == sorted(needed) and len(needed) < len(shards.counts)
    assert all(any(a <= p < b for a, b in ranges) for p in stream.positions())


def test_a_resumed_epoch_continues_with_the_same_batches(tmp_path):
    write_shards(scenes(40), tmp_path, shard_size=6)
    shards = load_pairs(f"wds:{tmp_path}")
    whole = epoch_keys(shards, 2, world=1, workers=2)[0]
    for start in (1, 3):
        assert epoch_keys(shards, 2, world=1, workers=2, start_batch=start)[0] == whole[start:]


def tiny():
    torch.manual_seed(0)
    return create_model("tiny", **SMALL)


def test_training_on_shards_resumes_exactly_and_does_not_depend_on_workers(tmp_path):
    write_shards(scenes(40), tmp_path / "shards", shard_size=6)
    shards = load_pairs(f"wds:{tmp_path}/shards")

    def train(name, steps, workers=0, resume=None):
        config = TrainConfig(out_dir=str(tmp_path / name), steps=steps, batch_size=8, warmup_steps=0, progress=False,
                             lr_backbone=1e-3, lr_new=1e-3, augment=True, num_workers=workers, shuffle_buffer=16,
                             resume=resume, save_every=3, keep_last=5)
        model = tiny()
        trainer = Trainer(model, shards, config)
        trainer.fit()
        return {k: v.clone() for k, v in model.state_dict().items()}, trainer

    straight, trainer = train("straight", 7)  # 5 batches per epoch: crosses into epoch 2
    assert trainer.steps_per_epoch == 5 and trainer.epoch == 1
    start = tiny().state_dict()
    assert any(not torch.equal(straight[k], start[k]) for k in straight)
    middle = tmp_path / "straight" / "checkpoints" / "step_0000003"  # mid-epoch: batch 3 of 5
    resumed, _ = train("resumed", 7, resume=str(middle))
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    workers, _ = train("workers", 7, workers=2)
    for key in straight:
        assert torch.equal(straight[key], workers[key]), key
    with pytest.raises(ValueError, match="webdataset shards are streamed: set group_batches=False"):
        Trainer(tiny(), shards, TrainConfig(out_dir=str(tmp_path / "g"), batch_size=8, group_batches=True, progress=False))


def test_finelip_shard_then_train_on_the_shards(tmp_path, capsys):
    write_jsonl(scenes(24), tmp_path / "own")
    assert cli(["shard", str(tmp_path / "own" / "train.jsonl"), "--out", str(tmp_path / "shards"), "--shard-size", "10"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 24 pairs in 3 shards" in printed and "wds:" in printed
    assert cli(["shard", "synthetic", "--size", "8", "--out", str(tmp_path / "shards")]) == 2
    assert "already holds shards" in capsys.readouterr().err
    shards = load_pairs(f"wds:{tmp_path}/shards/{{000000..000002}}.tar")
    assert [r["caption"] for r in shards] == [r["caption"] for r in scenes(24)]
    from finelip_kit.recipe import RunSpec, run

    settings = {"model.source": "preset:tiny", "model.vision.image_size": 32, "model.atrm_k": 4, "data.source": f"wds:{tmp_path}/shards/", "data.test_split": None,
                "train.steps": 2, "train.batch_size": 8, "eval.reference": False}
    with pytest.raises(ValueError, match="are webdataset shards, streamed for training; evaluate on other data"):
        run(RunSpec(name="bad", settings={**settings, "data.test_split": "test"}, results_dir=str(tmp_path / "runs"),
                    progress=False))
    result = run(RunSpec(name="ok", settings={**settings, "data.eval_source": str(tmp_path / "own" / "train.jsonl"),
                                              "data.test_split": "test", "eval.size": 8},
                         results_dir=str(tmp_path / "runs"), progress=False))
    assert result.record["status"] == "ok" and len(result.history) >= 1


# ----------------------------------------------------------------------------- hardening (issue 29)
def test_a_planted_temporary_symlink_is_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    for name in (".000000.tar.tmp", f".{MANIFEST}.tmp"):  # the names the writer used before the fix
        (out / name).symlink_to(victim)
    assert cli(["shard", "synthetic", "--size", "4", "--out", str(out)]) == 0
    assert victim.read_text() == "precious"
    assert len(load_pairs(f"wds:{out}")) == 4
    assert not list(out.glob(".*.tmp")) or all(p.is_symlink() for p in out.glob(".*.tmp"))


def test_resharding_a_folder_into_itself_is_refused_before_anything_is_removed(tmp_path, capsys):
    write_shards(scenes(8), tmp_path / "F", shard_size=4)
    before = {p.name: p.read_bytes() for p in (tmp_path / "F").iterdir()}
    for out in (tmp_path / "F", tmp_path):  # the folder itself, and one holding it
        assert cli(["shard", f"wds:{tmp_path / 'F'}/", "--out", str(out), "--overwrite"]) == 2
        assert "holds the input shards" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "F").iterdir()} == before
    assert len(load_pairs(f"wds:{tmp_path / 'F'}")) == 8


def test_overwrite_removes_only_shards_the_kit_wrote(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    foreign_shard(foreign / "000000.tar", [("a", {"png": png(), "txt": b"theirs"})])
    (foreign / MANIFEST).write_text(json.dumps({"their": "manifest"}))
    with pytest.raises(FileExistsError, match=r"did not write .*000000.tar \(not named by a finelip-kit shards.json\)"):
        write_shards(scenes(4), foreign, shard_size=4, overwrite=True)
    assert (foreign / "000000.tar").read_bytes().count(b"theirs") == 1
    assert json.loads((foreign / MANIFEST).read_text()) == {"their": "manifest"}
    # the kit's shards, one of them changed since: refused too; a folder named like a shard: refused by name
    write_shards(scenes(8), tmp_path / "mine", shard_size=4)
    with (tmp_path / "mine" / "000001.tar").open("ab") as shard:
        shard.write(b"\0" * 512)
    with pytest.raises(FileExistsError, match=r"000001.tar \(\d+ bytes; the kit wrote \d+\)"):
        write_shards(scenes(4), tmp_path / "mine", shard_size=4, overwrite=True)
    write_shards(scenes(4), tmp_path / "dir", shard_size=4)
    (tmp_path / "dir" / "000001.tar").mkdir()
    assert cli(["shard", "synthetic", "--size", "4", "--out", str(tmp_path / "dir"), "--overwrite"]) == 2
    # what the kit wrote, unchanged, is replaced
    write_shards(scenes(8), tmp_path / "again", shard_size=4)
    assert write_shards(scenes(4), tmp_path / "again", shard_size=4, overwrite=True).shards == 1
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["000000.tar", MANIFEST]


def test_a_second_writer_into_one_folder_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out)!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FileExistsError, match=rf"another writer \(process {holder.pid}\) is writing shards into"):
            write_shards(scenes(4), out, shard_size=4)
        assert list(out.iterdir()) == []
    finally:
        holder.kill()
        holder.wait()
    assert write_shards(scenes(4), out, shard_size=4).pairs == 4  # the lock died with its process


def test_one_image_id_for_two_different_images_is_refused_in_shards_as_in_files(tmp_path):
    samples = [(f"s{i}", {"png": png((i, 0, 0)), "txt": f"caption {i}".encode(), "json": b'{"image_id": 0}'})
               for i in range(6)]
    foreign_shard(tmp_path / "a.tar", samples)
    with pytest.raises(ValueError, match=r"a.tar sample 's1': duplicate image id for two different images \(id 'id 0'\)"):
        load_pairs(f"wds:{tmp_path}/a.tar")
    skipped = load_pairs(f"wds:{tmp_path}/a.tar", on_error="skip")
    assert len(skipped) == 1 and skipped.report.reasons["duplicate image id for two different images"] == 5
    unverified = load_pairs(f"wds:{tmp_path}/a.tar", verify="none")  # evaluation reads it whole: checked there
    with pytest.raises(ValueError, match="duplicate image id for two different images"):
        unverified.take()
    assert cli(["eval", "--model", "tiny", "--data", f"wds:{tmp_path}/a.tar"]) == 2
    # captions of one image may share its id: the same bytes under one id are one image
    same = [(f"t{i}", {"png": png(), "txt": f"caption {i}".encode(), "json": b'{"image_id": 7}'}) for i in range(3)]
    foreign_shard(tmp_path / "b.tar", same)
    taken = load_pairs(f"wds:{tmp_path}/b.tar").take()
    assert len(taken) == 3 and taken.num_images == 1


@pytest.mark.parametrize("lie, note", [
    ({"count": 0}, "count is 0, not an integer >= 1"),
    ({"count": -3}, "count is -3, not an integer >= 1"),
    ({"count": "abc"}, "count is 'abc', not an integer >= 1"),
    ({"count": True}, "count is True"),
    ({"bytes": -1}, "bytes is -1"),
])
def test_a_manifest_that_lies_is_not_trusted_and_the_shards_are_scanned(tmp_path, lie, note):
    write_shards(scenes(8), tmp_path, shard_size=4)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["shards"][1].update(lie)
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    shards = load_pairs(f"wds:{tmp_path}")
    assert len(shards) == 8 and shards.counts == [4, 4] and len(list(shards)) == 8
    (message,) = shards.report.notes
    assert str(tmp_path / MANIFEST) in message and note in message and "its shards were scanned" in message


def test_a_manifest_whose_total_disagrees_with_its_shards_is_not_trusted(tmp_path):
    write_shards(scenes(8), tmp_path, shard_size=4)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["shards"][0]["count"], manifest["count"] = 3, 8  # one shard understated, the total not
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    shards = load_pairs(f"wds:{tmp_path}")
    assert shards.counts == [4, 4] and "not the sum of its shards' counts (7)" in next(iter(shards.report.notes))
    (tmp_path / MANIFEST).write_text('{"format": "finelip-kit shards 1", "count": Infinity}')
    assert load_pairs(f"wds:{tmp_path}").counts == [4, 4]


def test_a_shard_range_is_sized_before_it_is_expanded(tmp_path):
    # before the fix the first one built a billion names (minutes, then memory); now the count is refused
    with pytest.raises(ValueError, match=r"names 1,000,000,000 shards, more than the 1,000,000"):
        load_pairs(f"wds:{tmp_path}/{{000000000..999999999}}.tar")
    with pytest.raises(ValueError, match=r"names 1,000,000,000,000 shards"):
        load_pairs(f"wds:{tmp_path}/{{000000..999999}}/{{000000..999999}}.tar")
