"""WebDataset shards: packing, streaming split by rank and worker, label statistics, sampling policies, subsets."""

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from r21d_zoo import create_model, save_pretrained
from r21d_zoo.cli import main
from r21d_zoo.train.distributed import WorldInfo
from r21d_zoo.data.labelled import LabelledVideos, Sample, read_labelled
from r21d_zoo.data.shards import (
    ShardStream,
    achieved_shares,
    iter_metadata,
    label_stats,
    open_shards,
    pack_shards,
    sample_key,
    sampling_multiplicity,
    tail_preserving_subset,
    target_shares,
)
from r21d_zoo.models import ClipSpec
from r21d_zoo.video import open_video, random_clip

from util import fork_workers_as_under_torchrun, loopback_server, make_video

SPEC = ClipSpec(num_frames=4, resize_size=(32, 40), crop_size=32)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """14 short videos in class folders (one with two labels via a CSV), packed 3 per shard."""
    root = tmp_path_factory.mktemp("videos")
    rows = ["path,labels"]
    for i in range(14):
        label = ["a", "b", "c"][i % 3]
        (root / label).mkdir(exist_ok=True)
        path = make_video(root / label / f"clip {i}.v1.mp4", num_frames=12 + i, size=(48, 64))
        rows.append(f"{path},{label}|c" if i == 13 else f"{path},{label}")
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path_factory.mktemp("shards")
    assert main(["shards", "pack", str(root / "list.csv"), "-o", str(out), "--max-per-shard", "3"]) == 0
    return root, out, read_labelled(root / "list.csv")


def _worker_keys(shards, rank, world, workers, epoch=0):
    stream = ShardStream(shards, world=WorldInfo(rank, world), decode=False, seed=3)
    stream.set_epoch(epoch)
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    return [key for key, _ in loader]


def test_pack_writes_shards_and_an_index_with_exact_counts(packed):
    _, out, data = packed
    index = json.loads((out / "index.json").read_text())
    assert [s["count"] for s in index["shards"]] == [3, 3, 3, 3, 2] and index["total"] == 14
    assert sorted(p.name for p in out.glob("*.tar")) == [s["url"] for s in index["shards"]]
    assert not list(out.glob(".*part")) and index["classes"] == ["a", "b", "c"] and index["multilabel"]
    assert sample_key("/v/a/clip 1.v1.mp4", "/v") == "a__clip_1_v1"


def test_every_sample_once_per_epoch_across_ranks_and_workers(packed):
    _, out, data = packed
    shards = open_shards(str(out))
    for epoch in (0, 1):
        per_rank = [_worker_keys(shards, rank, 2, 2, epoch) for rank in (0, 1)]
        keys = per_rank[0] + per_rank[1]
        assert len(keys) == len(set(keys)) == 14 and not set(per_rank[0]) & set(per_rank[1])
    assert _worker_keys(shards, 0, 2, 2, 0) == _worker_keys(shards, 0, 2, 2, 0)  # deterministic order
    assert _worker_keys(shards, 0, 1, 1, 0) != _worker_keys(shards, 0, 1, 1, 1)  # reshuffled per epoch


def _gloo_worker(rank, world, init, out_dir, result_dir):
    import torch.distributed as dist

    from r21d_zoo.train.distributed import init_distributed

    fork_workers_as_under_torchrun()
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        info = init_distributed()
        stream = ShardStream(open_shards(out_dir), world=info, decode=False)
        keys = [k for k, _ in DataLoader(stream, batch_size=None, num_workers=2)]
        gathered = [None] * world
        dist.all_gather_object(gathered, keys)
        if rank == 0:
            Path(result_dir, "keys.json").write_text(json.dumps(gathered))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_two_gloo_processes_with_two_workers_each_read_every_sample_once(packed, tmp_path):
    _, out, _ = packed
    torch.multiprocessing.spawn(_gloo_worker, args=(2, f"file://{tmp_path}/init", str(out), str(tmp_path)), nprocs=2)
    gathered = json.loads((tmp_path / "keys.json").read_text())
    keys = gathered[0] + gathered[1]
    assert len(keys) == len(set(keys)) == 14 and gathered[0] and gathered[1]


@pytest.mark.video
def test_shards_stream_the_same_from_a_url_and_a_pipe(packed):
    """WebDataset opens the shards (http through curl, from a loopback server): same samples, same clips."""
    _, out, _ = packed
    if shutil.which("curl") is None:
        pytest.skip("WebDataset reads http(s) shards through curl, which this machine lacks")
    with loopback_server(out) as base:
        pattern = "shard-{000000..000004}.tar"
        local = [(k, c) for c, _, k, _ in ShardStream(open_shards(str(out)), SPEC, seed=2, multilabel=True)]
        for source in (f"{base}/{pattern}", f"pipe:cat {out}/{pattern}"):
            shards = open_shards(source)
            assert len(shards.urls) == 5 and label_stats(shards)["videos"] == 14
            remote = [(k, c) for c, _, k, _ in ShardStream(shards, SPEC, ["a", "b", "c"], seed=2, multilabel=True)]
            assert [k for k, _ in remote] == [k for k, _ in local] and len(local) == 14
            assert all(torch.equal(a, b) for (_, a), (_, b) in zip(remote, local))


@pytest.mark.video
def test_streamed_clips_equal_clips_read_from_the_original_files(packed):
    root, out, data = packed
    stream = ShardStream(open_shards(str(out)), SPEC, seed=5, multilabel=True)
    sources = {sample_key(s.path, str(root)): s for s in data.samples}
    seen = 0
    for clip, target, key, _ in stream:
        with open_video(sources[key].path, SPEC) as r:
            start = random_clip(r.info.duration, SPEC.clip_seconds(r.info.fps), stream.clip_generator(key)).start
            assert torch.equal(clip, r.read_spec_clip(start, SPEC).frames)
        expected = torch.zeros(3)
        expected[list(sources[key].labels)] = 1
        assert torch.equal(target, expected / expected.sum())
        seen += 1
    assert seen == 14 and clip.shape == (4, 32, 40, 3)


def test_stats_count_labels_in_one_pass(packed, tmp_path, capsys):
    _, out, _ = packed
    assert main(["shards", "stats", str(out), "-o", str(tmp_path / "stats.json")]) == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["label_counts"] == {"a": 5, "b": 5, "c": 5} and stats["videos"] == 14
    assert stats["multilabel_videos"] == 1 and "14 videos, 3 labels" in capsys.readouterr().out
    pattern = str(out / "shard-{000000..000004}.tar")  # shards named by URL pattern, no index
    assert main(["shards", "stats", pattern, "-o", str(tmp_path / "s2.json")]) == 0
    assert json.loads((tmp_path / "s2.json").read_text()) == stats


def test_stats_and_subset_count_and_choose_only_the_selected_keys(packed, tmp_path, capsys):
    _, out, _ = packed
    keys = [key for key, _ in iter_metadata(open_shards(str(out)).urls)]
    a_keys = [k for k in keys if k.startswith("a__")]
    (tmp_path / "only_a.txt").write_text("\n".join(a_keys) + "\n")
    (tmp_path / "drop.txt").write_text(f"{a_keys[0]}\n{keys[-1]}\n")  # keys[-1]: the video labelled b and c
    stats = label_stats(open_shards(str(out)), include=set(a_keys), exclude={a_keys[0]})
    assert stats["label_counts"] == {"a": 4} and stats["videos"] == 4
    full = label_stats(open_shards(str(out)))
    assert stats["selection"] != full["selection"] == {"include": None, "exclude": None}
    cli = ["shards", "stats", str(out), "--include", str(tmp_path / "only_a.txt"), "-o", str(tmp_path / "s.json")]
    assert main(cli) == 0
    assert json.loads((tmp_path / "s.json").read_text())["label_counts"] == {"a": 5}
    sub = ["shards", "subset", str(out), "-n", "12", "--exclude", str(tmp_path / "drop.txt")]
    assert main(sub + ["-o", str(tmp_path / "sub.txt")]) == 0
    chosen = set((tmp_path / "sub.txt").read_text().split())
    assert len(chosen) == 12 and chosen == set(keys) - {a_keys[0], keys[-1]}
    assert main(sub[:-2] + ["-o", str(tmp_path / "x.txt"), "--exclude", str(tmp_path / "missing.txt")]) == 3
    assert "missing.txt cannot be read" in capsys.readouterr().err


# --- sampling policies on a synthetic long-tailed label set ----------------------------------------------------------


@pytest.fixture(scope="module")
def zipf_shards(tmp_path_factory):
    """20 labels with Zipf counts from 1000 down to 10 (placeholder bytes: these tests never decode)."""
    root = tmp_path_factory.mktemp("zipf")
    counts = {f"l{i:02d}": round(1000 / (1 + i * (100 - 1) / 19)) for i in range(20)}
    assert counts["l00"] == 1000 and counts["l19"] == 10
    samples, classes = [], sorted(counts)
    video = root / "v.mp4"
    video.write_bytes(b"not decoded")
    for label, n in counts.items():
        samples += [Sample(str(video), (classes.index(label),)) for _ in range(n)]
    pack_shards(LabelledVideos(samples, classes), str(root / "shards"), max_per_shard=500, check_videos=False)
    return open_shards(str(root / "shards")), counts


@pytest.mark.parametrize("policy", ["sqrt", "uniform", "natural"])
def test_sampling_policies_hit_their_target_label_shares(zipf_shards, policy):
    shards, counts = zipf_shards
    power = dict(natural=1.0, sqrt=0.5, uniform=0.0)[policy]
    norm = sum(n**power for n in counts.values())
    target = {k: n**power / norm for k, n in counts.items()}
    stream = ShardStream(shards, sampling=policy, label_counts=counts, decode=False, seed=1)
    seen: Counter = Counter()
    for epoch in range(20):  # about 20 x 4.6k draws
        stream.set_epoch(epoch)
        seen.update(labels[0] for _, labels in stream)
    draws = sum(seen.values())
    assert abs(draws / 20 - sum(counts.values())) < 0.02 * sum(counts.values())  # an epoch keeps its length
    for label, p in target.items():
        sigma = (p * (1 - p) / draws) ** 0.5  # binomial standard error of the share
        assert abs(seen[label] / draws - p) < 5 * sigma + 1e-9, (label, seen[label] / draws, p)


@pytest.fixture(scope="module")
def multilabel_zipf_shards(tmp_path_factory):
    """The Zipf counts of ``zipf_shards`` with a second label on every tenth video (drawn by the labels' counts, as
    hashtags co-occur with the popular ones), so head labels ride along on tail videos."""
    root = tmp_path_factory.mktemp("zipf2")
    first = {f"l{i:02d}": round(1000 / (1 + i * (100 - 1) / 19)) for i in range(20)}
    classes = sorted(first)
    video = root / "v.mp4"
    video.write_bytes(b"not decoded")
    rng = random.Random(0)
    samples = []
    for label, n in first.items():
        for j in range(n):
            labels = [label]
            if j % 10 == 9:
                labels.append(
                    rng.choices([c for c in classes if c != label], [first[c] for c in classes if c != label])[0]
                )
            samples.append(Sample(str(video), tuple(classes.index(x) for x in labels)))
    pack_shards(LabelledVideos(samples, classes), str(root / "shards"), max_per_shard=500, check_videos=False)
    return open_shards(str(root / "shards"))


@pytest.mark.parametrize("sampling", ["sqrt", "uniform"])
def test_multilabel_sampling_hits_its_target_label_shares(multilabel_zipf_shards, sampling, tmp_path, capsys):
    shards = multilabel_zipf_shards
    assert main(["shards", "stats", str(Path(shards.urls[0]).parent), "-o", str(tmp_path / "s.json")]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert 0.09 < stats["multilabel_videos"] / stats["videos"] < 0.11 and stats["label_sets"]
    report = stats["sampling"][sampling]
    assert report["worst_relative_error"] < 1e-6  # a non-negative solution exists here and was found
    assert f"{sampling} sampling: label shares within" in capsys.readouterr().out
    counts, sets = stats["label_counts"], stats["label_sets"]
    target = target_shares(counts, sampling)
    stream = ShardStream(shards, sampling=sampling, label_counts=counts, label_sets=sets, decode=False, seed=1)
    seen: Counter = Counter()
    emitted = 0
    for epoch in range(20):
        stream.set_epoch(epoch)
        for _, labels in stream:
            seen.update(labels)
            emitted += 1
    assert abs(emitted / 20 - stats["videos"]) < 0.02 * stats["videos"]  # an epoch keeps its length
    draws = sum(seen.values())
    for label, p in target.items():
        sigma = (p * (1 - p) / draws) ** 0.5
        assert abs(seen[label] / draws - p) < 5 * sigma, (label, seen[label] / draws, p)
    # unsolved weights (each label's own ratio, right for single labels) miss the head's target by far more
    alone = achieved_shares(counts, sampling_multiplicity(counts, sampling), sets)
    head_sigma = (target["l00"] * (1 - target["l00"]) / draws) ** 0.5
    assert alone["l00"] - target["l00"] > 10 * head_sigma


def test_multiplicity_is_the_ratio_of_target_to_natural_share():
    m = sampling_multiplicity({"head": 100, "tail": 1}, "uniform")
    assert m["head"] * 100 == pytest.approx(m["tail"] * 1) and m["head"] * 100 + m["tail"] == pytest.approx(101)
    with pytest.raises(ValueError, match="sampling must be one of"):
        sampling_multiplicity({"a": 1}, "zipf")


def test_tail_preserving_subset_keeps_every_tail_video_and_hits_n(zipf_shards, tmp_path):
    shards, counts = zipf_shards
    from r21d_zoo.data.shards import iter_metadata

    samples = list(iter_metadata(shards.urls))
    for n in (500, 1234, len(samples)):
        keys = set(tail_preserving_subset(samples, n, seed=2))
        assert len(keys) == n
        kept = Counter(labels[0] for key, labels in samples if key in keys)
        cap = max(kept.values())
        for label, total in counts.items():  # a label is kept whole, or cut to the common cap (or cap - 1)
            assert kept[label] == total or kept[label] >= cap - 1, (label, kept[label], total)
        assert all(kept[label] == counts[label] for label in counts if counts[label] < cap - 1)
    assert main(["shards", "subset", str(shards.urls[0]), "-n", "100", "-o", str(tmp_path / "keys.txt")]) == 0
    assert len((tmp_path / "keys.txt").read_text().split()) == 100


@pytest.mark.video
def test_extract_reads_shards_and_names_outputs_by_key(packed, tmp_path, capsys):
    root, out, data = packed
    save_pretrained(create_model("r3d_18", num_classes=3, channel_multiplier=0.125), tmp_path / "m")
    model = ["--model", f"local-dir:{tmp_path / 'm'}"]  # the same random weights in every run
    clip = ["--num-frames", "4", "--resize", "32", "40", "--crop-size", "32", "--workers", "2"]
    assert main(["extract", str(out), "-o", str(tmp_path / "a"), *model, *clip]) == 0
    assert main(["extract", str(root / "list.csv"), "-o", str(tmp_path / "b"), *model, *clip]) == 0
    by_key = {sample_key(s.path, str(root)): Path(s.path).stem for s in data.samples}
    assert sorted(p.stem for p in (tmp_path / "a").glob("*.npy") if ".times" not in p.name) == sorted(by_key)
    for key, stem in by_key.items():  # the same features as from the original files
        np.testing.assert_array_equal(np.load(tmp_path / "a" / f"{key}.npy"), np.load(tmp_path / "b" / f"{stem}.npy"))
    capsys.readouterr()
    assert main(["extract", f"{out}/shard-{{000000..000004}}.tar", "-o", str(tmp_path / "a"), *model, *clip]) == 0
    assert "0 extracted" in capsys.readouterr().out  # a re-run skips every key already done
    args = ["extract", str(out), "-o", str(tmp_path / "c"), *model, *clip, "--shard-id", "1", "--num-shards", "2"]
    assert main(args) == 0
    index = json.loads((out / "index.json").read_text())
    assert len(list((tmp_path / "c").glob("*.times.npy"))) == sum(s["count"] for s in index["shards"][1::2])


@pytest.mark.video
def test_damaged_shards_are_named_and_left_out_and_the_jobs_carry_on(packed, tmp_path, capsys):
    """A truncated shard keeps the samples before the damage, a shard that is not a tar is left whole; stats, subset,
    the training stream and extract go on with the rest, name each damaged shard and exit 1 (partial)."""
    _, out, _ = packed
    damaged = tmp_path / "shards"
    shutil.copytree(out, damaged)
    per_shard = [[k for k, _ in iter_metadata([str(u)])] for u in sorted(damaged.glob("shard-*.tar"))]
    truncated, garbage = damaged / "shard-000001.tar", damaged / "shard-000003.tar"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbage.write_bytes(b"not a tar file " * 200)
    intact = set(per_shard[0] + per_shard[2] + per_shard[4])
    capsys.readouterr()

    assert main(["shards", "stats", str(damaged), "-o", str(tmp_path / "stats.json")]) == 1
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert [m.split(":")[0] for m in stats["unreadable"]] == [str(truncated), str(garbage)]
    assert len(intact) <= stats["videos"] < len(intact) + len(per_shard[1])
    assert "2 damaged shard(s)" in capsys.readouterr().err
    assert main(["shards", "subset", str(damaged), "-n", "5", "-o", str(tmp_path / "sub.txt")]) == 1

    streamed = [key for _, _, key, _ in ShardStream(open_shards(str(damaged)), SPEC, multilabel=True)]
    assert intact <= set(streamed) <= intact | set(per_shard[1]) and len(streamed) == len(set(streamed))

    save_pretrained(create_model("r3d_18", num_classes=3, channel_multiplier=0.125), tmp_path / "m")
    args = ["extract", str(damaged), "-o", str(tmp_path / "feats"), "--model", f"local-dir:{tmp_path / 'm'}"]
    assert main(args + ["--num-frames", "4", "--resize", "32", "40", "--crop-size", "32", "--workers", "2"]) == 1
    done = {p.name[: -len(".times.npy")] for p in (tmp_path / "feats").glob("*.times.npy")}
    assert intact <= done <= intact | set(per_shard[1])
    manifest = [json.loads(line) for line in (tmp_path / "feats" / "manifest.jsonl").read_text().splitlines()]
    errors = {r["video"] for r in manifest if r["status"] == "error"}
    assert errors == {str(truncated), str(garbage)}


def test_shuffle_buffer_spreads_a_samples_copies_and_keeps_them(zipf_shards):
    shards, counts = zipf_shards

    def keys(shuffle):
        stream = ShardStream(shards, sampling="uniform", label_counts=counts, decode=False, shuffle=shuffle)
        return [k for k, _ in stream]

    plain, shuffled = keys(1), keys(64)
    repeats = lambda ks: sum(a == b for a, b in zip(ks, ks[1:]))  # noqa: E731
    assert Counter(plain) == Counter(shuffled)  # the same copies, in another order
    assert repeats(plain) > 500 and repeats(shuffled) < repeats(plain) / 20, (repeats(plain), repeats(shuffled))


def test_pack_leaves_out_files_with_no_video_and_lists_why(tmp_path, capsys):
    """Text, audio-only and zero-byte .mp4 files were once packed as videos, to fail at training time."""
    from util import make_audio_only

    make_video(tmp_path / "good.mp4", num_frames=4)
    (tmp_path / "text.mp4").write_text("not a video\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    make_audio_only(tmp_path / "audio.mp4")
    names = ["good", "text", "empty", "audio"]
    (tmp_path / "list.csv").write_text("".join(f"{n}.mp4,a\n" for n in names))
    assert main(["shards", "pack", str(tmp_path / "list.csv"), "-o", str(tmp_path / "s")]) == 1  # partial
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert index["total"] == 1 and sorted(Path(s["path"]).stem for s in index["skipped"]) == ["audio", "empty", "text"]
    assert "3 file(s) with no decodable video left out" in capsys.readouterr().out
