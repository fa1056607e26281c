"""Pre-training on streamed shards: the schedule in clips, the multi-label losses, exact mid-stream resume on one and
two processes, the exported model, the tail's share of the optimiser steps under each sampling policy, and (slow)
that pre-training helps a linear probe."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import r21d_zoo
from r21d_zoo.cli import main
from r21d_zoo.train.loop import StepOutput, TrainConfig, fit_stream
from r21d_zoo.train.config import SampleOptimConfig, ig65m_schedule
from r21d_zoo.train.optim import sample_lr_factor
from r21d_zoo.data.labelled import EvalClips, read_labelled
from r21d_zoo.jobs.pretrain import PretrainConfig, pretrain, pretrain_loss
from r21d_zoo.jobs.probe import probe
from r21d_zoo.data.shards import ShardStream, iter_metadata, label_stats, open_shards, pack_shards, shards_digest
from r21d_zoo.data.synthetic import DIRECTIONS, long_tailed_counts, make_motion_dataset
from r21d_zoo.models import ClipSpec
from r21d_zoo.video import VideoClassificationTransform, train_augment
from util import TINY, fork_workers_as_under_torchrun, learning_seed

SPEC = dict(num_frames=4, resize_size=(32, 32), crop_size=28)
TIMING = ("train_clips_per_s",)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """20 motion videos of 4 directions (one also labelled with a second direction), 3 per shard."""
    root = tmp_path_factory.mktemp("motion")
    train, _ = make_motion_dataset(
        root, videos_per_class=5, val_per_class=0, num_frames=8, size=32, directions=("left", "right", "up", "down")
    )
    lines = train.read_text().splitlines()
    lines[0], lines[1] = "path,labels", lines[1] + "|up"
    train.write_text("\n".join(lines) + "\n")
    out = tmp_path_factory.mktemp("shards")
    pack_shards(read_labelled(train), str(out), max_per_shard=3)
    shard_set = open_shards(str(out))
    shard_set.source_root = root
    return shard_set


def test_schedule_in_clips_warms_up_then_halves_k_times_at_equal_intervals():
    cfg = SampleOptimConfig(samples=1000, warmup_samples=100, halvings=3)
    assert sample_lr_factor(cfg, 0, 10) == pytest.approx(0.1) and sample_lr_factor(cfg, 90, 10) == 1.0
    factors = [sample_lr_factor(cfg, s, 10) for s in range(100, 1000)]
    changes = [s for s, (a, b) in enumerate(zip(factors, factors[1:]), 101) if a != b]
    assert changes == [325, 550, 775] and factors[0] == 1.0 and factors[-1] == 0.5**3  # 900 clips in 4 parts
    paper = ig65m_schedule()  # 0.192 for 128 GPUs x 16 clips; 6 clips per GPU for 32 frames
    assert paper.scaled_lr(16, 128) == pytest.approx(0.192) and paper.scaled_lr(6, 128) == pytest.approx(0.072)


def test_multilabel_losses():
    logits, g = torch.randn(3, 4), torch.Generator().manual_seed(0)
    target = torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [1 / 3, 1 / 3, 0, 1 / 3]])
    per_label = -logits.log_softmax(-1)
    expected = torch.stack([(per_label[i] * target[i]).sum() for i in range(3)]).mean()  # mean CE over its labels
    assert torch.allclose(pretrain_loss(logits, target, "softmax", g), expected)
    bce = F.binary_cross_entropy_with_logits(logits, (target > 0).float())
    assert torch.allclose(pretrain_loss(logits, target, "sigmoid", g), bce)
    draws = {round(float(pretrain_loss(logits[:1], target[:1], "sample-one", g)), 5) for _ in range(40)}
    assert draws == {round(float(per_label[0, 0]), 5), round(float(per_label[0, 1]), 5)}  # one of its two labels
    index = torch.tensor([1, 2, 3])
    assert torch.allclose(pretrain_loss(logits, index, "softmax", g), F.cross_entropy(logits, index))


@pytest.mark.video
def test_set_position_continues_each_stream_after_its_mark(shards):
    stream = ShardStream(shards, ClipSpec(**SPEC), seed=1, multilabel=True, shuffle=4)
    stream.set_epoch(2)
    full = [(key, pos.tolist()) for _, _, key, pos in stream]
    stream.set_position({0: [6]})
    rest = [(key, pos.tolist()) for _, _, key, pos in stream]
    assert rest == full[7:] and [p[1] for _, p in full] == list(range(len(full)))


def _tiny_stream_fit(shards, out, samples, stop=None, workers=2, world=None, keys=None, stream_seed=3):
    """fit_stream on a tiny model with sqrt sampling across epoch ends; records the keys of every batch."""
    torch.manual_seed(0)
    model = r21d_zoo.create_model("r3d_18", num_classes=4, **TINY)
    spec = ClipSpec.from_model(model, **SPEC)
    counts = label_stats(shards)["label_counts"]
    stream = ShardStream(shards, spec, None, "sqrt", counts, seed=stream_seed, world=world, multilabel=True, shuffle=8)
    cfg = TrainConfig(batch_size=3, workers=workers, seed=5)
    cfg.optim = SampleOptimConfig(lr=0.05, reference_batch=3, samples=samples, warmup_samples=6, halvings=2)

    def step(net, batch, ctx):
        clips, target, batch_keys, _ = batch
        if keys is not None:
            keys.append(list(batch_keys))
        logits = net(ctx.prepare(train_augment(clips, spec, True, ctx.generator)))
        return StepOutput(F.cross_entropy(logits, target), len(clips))

    return fit_stream(
        model,
        stream,
        step,
        cfg,
        {"all": (model.parameters(), 1.0)},
        checkpoint_every=12,
        out_dir=out,
        world=world,
        stop_after_samples=stop,
        progress=False,
    )


def _same_run(a: Path, b: Path) -> None:
    sa, sb = (torch.load(p / "last.pt", weights_only=True) for p in (a, b))
    for k in ("model",):
        assert sa[k].keys() == sb[k].keys() and all(torch.equal(sa[k][n], sb[k][n]) for n in sa[k])
    ma, mb = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert ma.keys() == mb.keys() and all(torch.equal(ma[i]["momentum_buffer"], mb[i]["momentum_buffer"]) for i in ma)
    assert sa["positions"] == sb["positions"] and sa["samples"] == sb["samples"] and sa["step"] == sb["step"]
    strip = lambda h: [{k: v for k, v in r.items() if k not in TIMING} for r in h]  # noqa: E731
    assert strip(sa["history"]) == strip(sb["history"])


@pytest.mark.video
def test_stopped_and_resumed_run_equals_an_uninterrupted_one(shards, tmp_path):
    full, part1, part2 = [], [], []
    _tiny_stream_fit(shards, tmp_path / "a", 48, keys=full)
    _tiny_stream_fit(shards, tmp_path / "b", 48, stop=24, keys=part1)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["samples"] < 48
    _tiny_stream_fit(shards, tmp_path / "b", 48, keys=part2)
    assert part1 and part2 and full == part1 + part2  # same sample order, nothing repeated or skipped
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=True)["positions"][0]["epoch"] >= 1  # crossed epochs
    _same_run(tmp_path / "a", tmp_path / "b")
    with pytest.raises(ValueError, match=r"other workers \(workers: 2 then, 1 now\)"):
        _tiny_stream_fit(shards, tmp_path / "b", 60, workers=1)
    with pytest.raises(ValueError, match=r"other stream \(stream: .*'seed': 3.* then, .*'seed': 4"):
        _tiny_stream_fit(shards, tmp_path / "b", 60, stream_seed=4)  # the saved positions index another order


def _gloo_resume(rank, world_size, init, shard_dir, out):
    import torch.distributed as dist

    from r21d_zoo.train.distributed import init_distributed

    fork_workers_as_under_torchrun()
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world_size)
    try:
        world = init_distributed()
        shards, keys = open_shards(shard_dir), {"full": [], "part1": [], "part2": []}
        _tiny_stream_fit(shards, Path(out, "a"), 48, world=world, keys=keys["full"])
        _tiny_stream_fit(shards, Path(out, "b"), 48, stop=24, world=world, keys=keys["part1"])
        _tiny_stream_fit(shards, Path(out, "b"), 48, world=world, keys=keys["part2"])
        epochs = torch.load(Path(out, "a", "last.pt"), weights_only=True)["positions"][rank]["epoch"]
        Path(out, f"keys{rank}.json").write_text(json.dumps(dict(keys, epoch=epochs)))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.video
def test_two_gloo_processes_resume_bit_for_bit(shards, tmp_path):
    shard_dir = str(Path(shards.urls[0]).parent)
    torch.multiprocessing.spawn(_gloo_resume, args=(2, f"file://{tmp_path}/init", shard_dir, str(tmp_path)), nprocs=2)
    orders = []
    for rank in (0, 1):
        keys = json.loads((tmp_path / f"keys{rank}.json").read_text())
        assert keys["part1"] and keys["part2"] and keys["full"] == keys["part1"] + keys["part2"]
        assert keys["epoch"] >= 1  # each rank's stream crossed an epoch end
        orders.append(keys["full"])
    assert orders[0] != orders[1]  # each rank read its own shards
    _same_run(tmp_path / "a", tmp_path / "b")


@pytest.mark.video
def test_pretrain_command_exports_a_model_finetune_and_extract_load(shards, tmp_path):
    out, shard_dir = tmp_path / "run", str(Path(shards.urls[0]).parent)
    args = ["pretrain", shard_dir, "-o", str(out), "--model", "r3d_18", "--model-args", json.dumps(TINY)]
    args += ["--num-frames", "4", "--resize", "32", "32", "--crop-size", "28", "--samples", "12"]
    args += ["--warmup-samples", "3", "--checkpoint-every", "6", "--batch-size", "3", "--workers", "1"]
    args += ["--lr", "0.05", "--reference-batch", "3", "--loss", "sample-one", "--stats", str(tmp_path / "stats.json")]
    assert main(["shards", "stats", shard_dir, "-o", str(tmp_path / "stats.json")]) == 0
    assert main(args) == 0
    history = json.loads((out / "metrics.json").read_text())
    assert [h["samples"] for h in history] == [6, 12] and (out / "curves.png").is_file()
    model = r21d_zoo.create_model(f"local-dir:{out / 'final'}")
    assert list(model.pretrained_cfg["label_names"]) == ["down", "left", "right", "up"]
    assert ClipSpec.from_model(model).num_frames == 4 and "sqrt sampling" in model.pretrained_cfg["notes"]
    assert "(seed 0)" in model.pretrained_cfg["notes"]  # random weights: their seed, and no source's licence
    assert model.pretrained_cfg.get("license_name") is None and "vmz" not in (out / "final" / "README.md").read_text()
    state = torch.load(out / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    head = r21d_zoo.infer.config.ModelSource(f"local-dir:{out / 'final'}").create(num_classes=2)
    assert head.num_classes == 2 and torch.equal(head.stem[0].weight, model.stem[0].weight)
    video = sorted(Path(shards.source_root).glob("left/*.mp4"))[0]
    assert main(["extract", str(video), "-o", str(tmp_path / "feats"), "--model", f"local-dir:{out / 'final'}"]) == 0
    assert np.load(tmp_path / "feats" / "left_000.npy").shape[-1] == model.num_features


def test_label_counts_of_another_selection_are_refused(shards, tmp_path, capsys):
    """sqrt/uniform shares come from the counts: counts over the whole set would mis-sample a subset."""
    shard_dir = str(Path(shards.urls[0]).parent)
    (tmp_path / "subset.txt").write_text("\n".join(k for k, _ in iter_metadata(shards.urls) if "left" in k))
    assert main(["shards", "stats", shard_dir, "-o", str(tmp_path / "all.json")]) == 0
    args = ["pretrain", shard_dir, "-o", str(tmp_path / "run"), "--include", str(tmp_path / "subset.txt")]
    assert main(args + ["--stats", str(tmp_path / "all.json")]) == 3
    assert f"shards stats {shard_dir} --include {tmp_path / 'subset.txt'} -o" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_label_counts_of_other_shards_are_refused_and_of_a_moved_copy_accepted(shards, tmp_path, capsys):
    shard_dir = Path(shards.urls[0]).parent
    other = tmp_path / "other"
    pack_shards(read_labelled(str(shards.source_root / "train.csv")), str(other), max_per_shard=4)
    assert main(["shards", "stats", str(other), "-o", str(tmp_path / "other.json")]) == 0
    args = ["pretrain", str(shard_dir), "-o", str(tmp_path / "run"), "--stats", str(tmp_path / "other.json")]
    capsys.readouterr()
    assert main(args) == 3
    assert f"other shards than {shard_dir}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    moved = tmp_path / "moved"
    shutil.copytree(shard_dir, moved)
    assert main(["shards", "stats", str(moved), "-o", str(tmp_path / "moved.json")]) == 0
    here = json.loads((tmp_path / "moved.json").read_text())["shards"]
    assert here == shards_digest(open_shards(str(shard_dir)))  # the same shards wherever they lie


def test_policy_without_counts_counts_the_selected_videos_in_one_pass(shards, monkeypatch):
    import r21d_zoo.jobs.pretrain as job

    counted, count = [], job.label_stats
    monkeypatch.setattr(job, "label_stats", lambda *a: counted.append(count(*a)) or counted[-1])
    cfg = PretrainConfig(model="r3d_18", model_args=TINY, clip=SPEC, batch_size=3, workers=0, sampling="uniform")
    cfg.optim = SampleOptimConfig(lr=0.05, reference_batch=3, samples=3, warmup_samples=0, halvings=0)
    metadata = list(iter_metadata(shards.urls))
    left = {k for k, _ in metadata if "left" in k}
    result = pretrain(shards, cfg, include=left, progress=False)
    assert result.history[-1]["samples"] == 3 and result.model.num_classes == 4
    expected = Counter(label for k, labels in metadata if k in left for label in labels)
    assert len(counted) == 1 and counted[0]["label_counts"] == dict(expected) and expected["left"] == 5


TAIL_COUNTS = {"left": 27, "right": 9, "up": 3, "down": 1}  # the tail: up and down, 10% of the videos


@pytest.fixture(scope="module")
def long_tail(tmp_path_factory):
    """4 directions with 27, 9, 3 and 1 training videos (4 frames of 32x32), 8 per shard."""
    root = tmp_path_factory.mktemp("tail")
    train, _ = make_motion_dataset(root, val_per_class=0, num_frames=4, size=32, train_counts=TAIL_COUNTS)
    pack_shards(read_labelled(train), str(root / "shards"), max_per_shard=8)
    return str(root / "shards")


@pytest.mark.video
@pytest.mark.parametrize("policy", ["natural", "sqrt"])
def test_sampling_gives_the_tail_its_target_share_of_the_optimiser_steps(long_tail, policy, monkeypatch):
    """What square-root sampling provably changes, whatever a training run then learns: each label's share of what the
    loss sees, step after step, through the pretrain job's stream, workers and batching (natural 0.10, sqrt 0.25)."""
    import r21d_zoo.jobs.pretrain as job

    seen, loss = [], job.pretrain_loss

    def recording_loss(logits, target, *args):
        seen.append(target)
        return loss(logits, target, *args)

    monkeypatch.setattr(job, "pretrain_loss", recording_loss)
    samples = 400
    cfg = PretrainConfig(
        model="r3d_18", model_args=TINY, clip=dict(num_frames=4, resize_size=(32, 32), crop_size=28), sampling=policy,
        batch_size=8, workers=1, seed=learning_seed(),
        optim=SampleOptimConfig(lr=0.01, reference_batch=8, samples=samples, warmup_samples=0, halvings=0),
    )  # fmt: skip
    classes = list(pretrain(open_shards(long_tail), cfg, progress=False).model.pretrained_cfg["label_names"])
    labels = torch.cat(seen).tolist()
    assert samples <= len(labels) < samples + cfg.batch_size  # the run stops at the step that reaches its budget
    power = dict(natural=1.0, sqrt=0.5)[policy]
    tail = ("up", "down")
    target = sum(TAIL_COUNTS[k] ** power for k in tail) / sum(n**power for n in TAIL_COUNTS.values())
    share = sum(classes[i] in tail for i in labels) / len(labels)
    sigma = (target * (1 - target) / len(labels)) ** 0.5  # 0.015 (natural), 0.022 (sqrt): the targets are 5+ apart
    print(f"tail share of the optimiser steps, {policy}, seed {learning_seed()}: {share:.3f} (target {target:.3f})")
    assert abs(share - target) < 4 * sigma, (share, target)


@torch.no_grad()
def _video_features(model, csv, classes, spec_kw):
    """Per video: pre-logit features (2 uniform clips, centre crop, averaged) and the label index."""
    data = read_labelled(csv, classes=classes)
    spec = ClipSpec.from_model(model, **spec_kw)
    transform = VideoClassificationTransform.from_spec(spec)
    features, labels = [], []
    for clips, _, i, error in EvalClips(data, spec, 2):
        assert not error
        features.append(model.forward_head(model.forward_features(transform(clips)), pre_logits=True).mean(0).numpy())
        labels.append(data.samples[i].labels[0])
    return np.stack(features), np.array(labels)


@pytest.mark.slow
@pytest.mark.video
def test_pretraining_helps_a_linear_probe(tmp_path):
    """Pre-training with sqrt sampling on 8 motion directions (60 down to 4 videos each), then a linear probe on a
    balanced target task of other videos: far above the same probe on a randomly initialised network (chance 0.125).
    With lr 0.025 the gaps are +0.46 to +0.79 at seeds 0-3 (torch 2.14); lr 0.05 is at the edge (seed 0 does not take
    off) and 0.1 diverges. R3D-18 learns the task from random initialisation at every seed tried; R(2+1)D-18 at this
    budget did not take off at some."""
    seed, arch, width = learning_seed(), "r3d_18", dict(channel_multiplier=0.25)
    directions = list(DIRECTIONS)
    counts = long_tailed_counts(directions, 60, 4)
    pre, _ = make_motion_dataset(
        tmp_path / "pre", val_per_class=0, num_frames=8, size=32, seed=seed, train_counts=counts
    )
    target_train, target_test = make_motion_dataset(
        tmp_path / "target", videos_per_class=8, val_per_class=16, num_frames=8, size=32, seed=seed + 1000,
        directions=directions,
    )  # fmt: skip
    pack_shards(read_labelled(pre), str(tmp_path / "shards"), max_per_shard=16)
    clip, classes = dict(num_frames=8, resize_size=(32, 32), crop_size=28), sorted(directions)

    def probe_accuracy(model):
        x_train, y_train = _video_features(model, target_train, classes, clip)
        x_test, y_test = _video_features(model, target_test, classes, clip)
        return probe(x_train, y_train, x_test, y_test, progress=False)["test_accuracy"]

    torch.manual_seed(seed)
    random_init = probe_accuracy(r21d_zoo.create_model(arch, num_classes=8, **width).eval())
    cfg = PretrainConfig(
        model=arch, model_args=width, clip=clip, sampling="sqrt", flip=False, batch_size=16, workers=2,
        checkpoint_every=3000, seed=seed,
        optim=SampleOptimConfig(lr=0.025, reference_batch=16, samples=2000, warmup_samples=300, halvings=2),
    )  # fmt: skip
    model = pretrain(open_shards(str(tmp_path / "shards")), cfg, progress=False).model.eval()
    assert list(model.pretrained_cfg["label_names"]) == classes
    pretrained = probe_accuracy(model)
    print(f"linear probe, seed {seed}: pre-trained {pretrained:.3f}, random init {random_init:.3f}")
    assert pretrained > random_init + 0.3, (pretrained, random_init)


def test_slurm_ranks_are_read_and_a_missing_rendezvous_address_is_named(monkeypatch):
    from r21d_zoo.train.distributed import init_distributed, world_info_from_env

    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "16")
    monkeypatch.setenv("SLURM_PROCID", "9")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    world = world_info_from_env()
    assert (world.rank, world.world_size, world.local_rank) == (9, 16, 1)
    with pytest.raises(RuntimeError, match="MASTER_ADDR and MASTER_PORT not set.*scontrol show hostnames"):
        init_distributed()
