"""Fine-tuning, evaluation and probing on the synthetic motion-direction dataset."""

import json
from pathlib import Path
import logging

import numpy as np
import pytest
import torch

import r21d_zoo
from r21d_zoo.cli import main as cli_main
from r21d_zoo.infer.config import ModelSource
from r21d_zoo.train.optim import OptimConfig
from r21d_zoo.infer.scores import evaluate
from r21d_zoo.jobs.finetune import FinetuneConfig, finetune
from r21d_zoo.infer.metrics import average_precision
from r21d_zoo.data.labelled import read_labelled
from r21d_zoo.jobs.probe import DEFAULT_L2, probe
from r21d_zoo.train.logistic import fit_logistic
from r21d_zoo.data.synthetic import make_motion_dataset
from r21d_zoo.models import ClipSpec
from r21d_zoo._errors import UsageError
from util import TINY, fork_workers_as_under_torchrun, learning_seed, make_broken

CLIP = dict(num_frames=8, resize_size=(32, 32), crop_size=28)
SPEC = ClipSpec(**CLIP)


def config(arch="r2plus1d_18", epochs=2, lr=0.02, model_args=TINY, pretrained=False, **kw) -> FinetuneConfig:
    base = dict(
        model=ModelSource(arch, pretrained=pretrained, model_args=model_args),
        clip=CLIP,
        flip=False,
        batch_size=8,
        workers=0,
        amp=None,
        optim=OptimConfig(lr=lr, reference_batch=8, epochs=epochs, warmup_epochs=1, schedule="cosine"),
        num_clips=2,
    )
    base.update(kw)
    return FinetuneConfig(**base)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """12 training and 7 validation videos (an odd count) of the two-class motion task."""
    root = tmp_path_factory.mktemp("small")
    train, val = make_motion_dataset(root, videos_per_class=6, val_per_class=4, num_frames=8, size=32)
    lines = val.read_text().splitlines()
    val.write_text("\n".join(lines[:-1]) + "\n")  # 7 validation videos
    return read_labelled(train), read_labelled(val, classes=["left", "right"]), root


@pytest.mark.slow
@pytest.mark.video
def test_r2plus1d_learns_motion_direction_that_fr2d_cannot(tmp_path):
    seed = learning_seed()
    train_csv, val_csv = make_motion_dataset(
        tmp_path, videos_per_class=64, val_per_class=40, num_frames=8, size=32, seed=seed
    )
    train, val = read_labelled(train_csv), read_labelled(val_csv, classes=["left", "right"])
    results = {}
    for arch in ("r2plus1d_18", "fr2d_18"):
        # 5 epochs of 64 videos a class: R(2+1)D-18 reached 0.975-1.0 and fR2D-18 0.46-0.53 at seeds 0-2
        cfg = config(arch, epochs=5, model_args=dict(channel_multiplier=0.25), num_clips=1, seed=seed)
        results[arch] = finetune(train, val, cfg, progress=False).history[-1]["val_video_top1"]
    print(f"finetune seed {seed}: {results}")
    assert results["r2plus1d_18"] >= 0.9, results
    assert results["fr2d_18"] <= 0.65, results  # chance is 0.5: single frames carry no information on direction


@pytest.mark.video
def test_resumed_run_equals_an_uninterrupted_one(small, tmp_path):
    train, val, _ = small
    cfg = config(epochs=4, model_args=dict(TINY, drop_rate=0.2))  # dropout: the RNG state must be restored too
    full = finetune(train, val, cfg, out_dir=tmp_path / "full", progress=False)
    finetune(train, val, cfg, out_dir=tmp_path / "split", stop_after_epochs=2, progress=False)
    resumed = finetune(train, val, cfg, out_dir=tmp_path / "split", progress=False)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    out = tmp_path / "full"
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 5 and len(json.loads((out / "metrics.json").read_text())) == 4
    best = r21d_zoo.create_model(f"local-dir:{out / 'best'}")
    assert best.pretrained_cfg["label_names"] == ("left", "right") and best.fc.out_features == 2


@pytest.mark.video
def test_a_run_folder_resumes_only_with_the_settings_it_was_started_with(small, tmp_path, capsys):
    from r21d_zoo.cli import EXIT_INPUT

    _, _, root = small
    out = tmp_path / "run"
    args = ["finetune", "--train", str(root / "train.csv"), "-o", str(out), "--model", "r2plus1d_18"]
    args += ["--random-weights", "--model-args", json.dumps(TINY), "--epochs", "1", "--num-frames", "8"]
    args += ["--resize", "32", "32", "--crop-size", "28", "--batch-size", "4", "--workers", "0"]
    assert cli_main(args) == 0
    final = (out / "final" / "model.safetensors").read_bytes()
    subset = root / "train_subset.csv"
    subset.write_text("\n".join((root / "train.csv").read_text().splitlines()[:9]) + "\n")  # 8 of the 12 videos
    for change, named in ((["--lr", "0.5"], "optim.lr: 0.01 then, 0.5 now"), (["--train", str(subset)], "train data")):
        assert cli_main(args + change) == EXIT_INPUT
        err = capsys.readouterr().err
        assert named in err and "another -o" in err and str(out / "last.pt") in err, err
    assert (out / "final" / "model.safetensors").read_bytes() == final  # nothing of the run was touched
    assert cli_main(args + ["--workers", "1"]) == 0  # the same settings (workers only say how) resume it


def _front_matter(card: str):
    from huggingface_hub import ModelCard

    return ModelCard(card).data


@pytest.mark.video
def test_model_finetuned_from_random_init_carries_its_own_task(small, tmp_path):
    train, val, _ = small
    result = finetune(train, val, config(epochs=1), out_dir=tmp_path / "run", progress=False)
    assert result.best_dir == tmp_path / "run" / "best" and result.final_dir == tmp_path / "run" / "final"
    for folder in (result.best_dir, result.final_dir):
        model = r21d_zoo.create_model(f"local-dir:{folder}")
        cfg = model.pretrained_cfg
        assert cfg["label_names"] == ("left", "right") and cfg["num_classes"] == 2 and model.fc.out_features == 2
        assert cfg["base_model"] is None and cfg.get("tag") is None and not cfg.get("url")
        assert ClipSpec.from_model(model) == SPEC  # the clip it was trained with, not the Kinetics default
    card = (result.best_dir / "README.md").read_text()
    data = _front_matter(card)
    assert data.base_model is None and data.datasets == ["train.csv"]
    assert "kinetics" not in card.lower() and "trained from random initialisation" in card
    assert "2: left, right" in card
    top1 = result.history[-1]["val_video_top1"]
    assert f"| val.csv | video_top1 | {top1} |" in card  # its own validation accuracy
    assert ("val.csv", "video_top1", top1) in {
        (r.dataset_name, r.metric_type, r.metric_value) for r in data.eval_results
    }


@pytest.mark.video
def test_kinetics_weights_finetuned_onto_another_task_name_their_start(small, tmp_path):
    train, val, _ = small
    torch.manual_seed(1)
    source = r21d_zoo.create_model("r2plus1d_18.kinetics400_16f", **TINY)  # stands in for the released weights
    r21d_zoo.save_pretrained(source, tmp_path / "src")
    cfg = config(epochs=1, pretrained=True, arch="r2plus1d_18.kinetics400_16f")
    cfg.model.checkpoint_path = str(tmp_path / "src" / "model.safetensors")
    result = finetune(train, val, cfg, out_dir=tmp_path / "run", progress=False)
    model = r21d_zoo.create_model(f"local-dir:{result.best_dir}")
    assert model.pretrained_cfg["label_names"] == ("left", "right")
    assert model.pretrained_cfg["base_model"] == "r2plus1d_18.kinetics400_16f"
    card = (result.best_dir / "README.md").read_text()
    data = _front_matter(card)
    assert data.base_model == "r2plus1d_18.kinetics400_16f" and data.datasets == ["train.csv"]
    assert "68.5" not in card and "kinetics-400" not in card  # none of the source's published numbers or data
    assert "derived from `r2plus1d_18.kinetics400_16f`" in card


@pytest.mark.video
def test_finetune_without_validation_still_leaves_a_model(small, tmp_path):
    train, _, _ = small
    result = finetune(train, None, config(epochs=1), out_dir=tmp_path / "run", progress=False)
    assert result.best_dir is None and result.final_dir == tmp_path / "run" / "final"
    assert r21d_zoo.create_model(f"local-dir:{result.final_dir}").fc.out_features == 2


@pytest.mark.video
def test_fc_mode_trains_only_the_classifier(small):
    train, _, _ = small
    torch.manual_seed(0)
    result = finetune(train, None, config(mode="fc", epochs=1), progress=False)
    torch.manual_seed(0)
    init = r21d_zoo.create_model("r2plus1d_18", num_classes=2, **TINY).state_dict()
    changed = {k for k, v in result.model.state_dict().items() if not torch.equal(v, init[k])}
    assert changed == {"fc.weight", "fc.bias"}  # BN statistics included: frozen features


@pytest.mark.video
def test_evaluate_counts_protocols_and_report(small, torch_home):
    _, val, _ = small
    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=2, **TINY).eval()
    m = evaluate(model, val, SPEC, 3, keep_scores=True)
    assert (m["videos"], m["clips"], m["failed"]) == (7, 21, 0)
    ort = evaluate(model, val, SPEC, 3, keep_scores=True, runtime="onnxruntime")  # the same numbers on onnxruntime
    assert ort["confusion_matrix"] == m["confusion_matrix"] and ort["video_top1"] == m["video_top1"]
    for a, b in zip(ort["video_scores"], m["video_scores"]):
        assert a["top"][0]["label"] == b["top"][0]["label"] and abs(a["top"][0]["score"] - b["top"][0]["score"]) < 1e-4
    with pytest.raises(UsageError, match="crop mode full .* runtime eager only"):
        evaluate(model, val, ClipSpec(**CLIP, crop_mode="full"), 2, runtime="torch")
    assert sum(sum(r) for r in m["confusion_matrix"]) == 7
    assert m["video_correct"] == sum(m["confusion_matrix"][i][i] for i in range(2))
    assert m["per_class"]["left"]["support"] == 4 and m["per_class"]["right"]["support"] == 3
    three = evaluate(model, val, ClipSpec(**CLIP, crop_mode="three"), 2)
    full = evaluate(model, val, ClipSpec(**CLIP, crop_mode="full"), 2)
    assert three["videos"] == full["videos"] == 7 and 0 <= full["video_top1"] <= 1


@pytest.mark.video
def test_evaluate_records_broken_videos(small, tmp_path):
    _, val, root = small
    broken = make_broken("random", tmp_path / "broken.mp4")
    csv = tmp_path / "with_broken.csv"
    csv.write_text("".join(f"{s.path},{val.classes[s.labels[0]]}\n" for s in val.samples) + f"{broken},left\n")
    data = read_labelled(csv, classes=["left", "right"])
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=2, **TINY).eval()
    m = evaluate(model, data, SPEC, 1)
    assert m["failed"] == 1 and str(broken) in m["errors"] and m["videos"] == len(data) - 1


def _ddp_worker(rank, world, init, root, out):
    import torch.distributed as dist

    torch.set_num_threads(1)
    fork_workers_as_under_torchrun()
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        from r21d_zoo.train.distributed import WorldInfo

        info = WorldInfo(rank, world, 0)
        train, val = read_labelled(root / "train.csv"), read_labelled(root / "val.csv", classes=["left", "right"])
        result = finetune(train, val, config(epochs=1), out_dir=out, world=info, progress=False)
        torch.manual_seed(0)
        model = r21d_zoo.create_model("r2plus1d_18", num_classes=2, **TINY).eval()
        metrics = evaluate(model, val, SPEC, 2, world=info)
        if rank == 0:
            (out / "eval.json").write_text(json.dumps(metrics))
            assert result.history[0]["epoch"] == 1
        dist.barrier()  # both ranks done before gloo tears down (its threads race at exit)
    finally:
        dist.destroy_process_group()


@pytest.mark.video
@pytest.mark.ddp
def test_two_process_ddp_finetune_and_exact_evaluation_counts(small, tmp_path):
    _, val, root = small
    torch.multiprocessing.spawn(_ddp_worker, args=(2, f"file://{tmp_path}/init", root, tmp_path / "ddp"), nprocs=2)
    assert (tmp_path / "ddp" / "best" / "model.safetensors").exists()
    ddp = json.loads((tmp_path / "ddp" / "eval.json").read_text())
    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=2, **TINY).eval()
    single = evaluate(model, val, SPEC, 2)
    assert len(val) == 7
    for key in ("videos", "clips", "video_correct", "confusion_matrix"):
        assert ddp[key] == single[key], key
    assert ddp["video_top1"] == pytest.approx(single["video_top1"])


def test_probe_matches_scikit_learn_logistic_regression(small, tmp_path, caplog):
    sklearn = pytest.importorskip("sklearn.linear_model")
    caplog.set_level(logging.INFO, logger="r21d_zoo.progress")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 1.5
    y = rng.integers(0, 4, 400)
    x = centres[y] + rng.normal(size=(400, 16))
    result = probe(x[:300], y[:300], x[300:], y[300:])
    last = [r.getMessage() for r in caplog.records if r.name == "r21d_zoo.progress"][-1]  # stderr is no terminal
    assert last.startswith(f"probe: {len(DEFAULT_L2) + 1}/{len(DEFAULT_L2) + 1} fits") and "ETA" in last
    ref = sklearn.LogisticRegression(C=1.0 / (result["l2"] * 300), max_iter=5000, tol=1e-10)
    mean, std = x[:300].mean(0), x[:300].std(0, ddof=1)
    ref.fit((x[:300] - mean) / std, y[:300])
    ref_acc = ref.score((x[300:] - mean) / std, y[300:])
    assert abs(result["test_accuracy"] - ref_acc) <= 0.01, (result["test_accuracy"], ref_acc)
    w, b = fit_logistic(torch.as_tensor((x[:300] - mean) / std), torch.as_tensor(y[:300]), result["l2"])
    np.testing.assert_allclose(w.T.numpy() - w.T.numpy().mean(0), ref.coef_ - ref.coef_.mean(0), atol=2e-3)


@pytest.mark.video
def test_probe_cli_on_extracted_features_of_the_motion_dataset(small, tmp_path):
    sklearn = pytest.importorskip("sklearn.linear_model")
    _, _, root = small
    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=2, **TINY)
    model.pretrained_cfg.update(num_frames=8, resize_size=(32, 32), crop_size=28)
    r21d_zoo.save_pretrained(model, tmp_path / "m")
    feats = tmp_path / "feats"
    assert (
        cli_main(["extract", str(root), "--model", f"local-dir:{tmp_path / 'm'}", "-o", str(feats), "--workers", "0"])
        == 0
    )
    from r21d_zoo.jobs.probe import load_features, run_probe

    train, test = read_labelled(root / "train.csv"), read_labelled(root / "val.csv", classes=["left", "right"])
    summary = run_probe(feats, train, feats, test)
    x_tr, y_tr, _ = load_features(feats, train)
    x_te, y_te, _ = load_features(feats, test)
    mean, std = x_tr.mean(0), x_tr.std(0, ddof=1) + 1e-8
    ref = sklearn.LogisticRegression(C=1.0 / (summary["l2"] * len(x_tr)), max_iter=5000, tol=1e-10)
    ref.fit((x_tr - mean) / std, y_tr)
    assert abs(summary["test_accuracy"] - ref.score((x_te - mean) / std, y_te)) <= 0.01
    assert summary["missing_train"] == [] and summary["train_size"] == 12


def test_multilabel_map_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    targets = (rng.random((50, 5)) < 0.3).astype(float)
    scores = rng.random((50, 5)) + targets * 0.5
    ours = average_precision(torch.tensor(scores), torch.tensor(targets))
    ref = [metrics.average_precision_score(targets[:, k], scores[:, k]) for k in range(5)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6)


@pytest.mark.video
def test_read_labelled_formats(tmp_path, small):
    _, _, root = small
    folders = read_labelled(root)
    assert folders.classes == ["left", "right"] and len(folders) == 20
    for name in ("a.mp4", "b.mp4", "left/left_000.mp4", "right/right_001.mp4"):  # placeholders: a list whose
        (tmp_path / name).parent.mkdir(exist_ok=True)  # videos are all missing is refused
        (tmp_path / name).touch()
    ints = tmp_path / "ints.csv"
    ints.write_text("a.mp4,0\nb.mp4,2\n")
    assert read_labelled(ints).classes == ["0", "1", "2"]
    multi = tmp_path / "multi.csv"
    multi.write_text("path,label\na.mp4,x|y\nb.mp4,z\n")
    data = read_labelled(multi)
    assert data.multilabel and data.samples[0].labels == (0, 1)
    split = tmp_path / "trainlist01.txt"
    split.write_text("left/left_000.mp4 1\nright/right_001.mp4 2\n")  # UCF101: 1-based class index, ignored
    assert [s.labels for s in read_labelled(split, classes=["left", "right"]).samples] == [(0,), (1,)]
    with pytest.raises(ValueError, match="label 'up'"):
        bad = tmp_path / "bad.csv"
        bad.write_text("a.mp4,up\n")
        read_labelled(bad, classes=["left", "right"])



def test_a_new_label_format_plugs_into_the_registry(tmp_path, monkeypatch):
    """What the next dataset format does: register a LabelFormat; every reader of labelled videos then reads it."""
    from r21d_zoo.data import labelled

    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).touch()
    source = tmp_path / "annotations.json"
    source.write_text(json.dumps([{"video": "a.mp4", "label": "jump"}, {"video": "b.mp4", "label": "run"}]))

    def rows(src, options):
        return [labelled.Row(i + 1, r["video"], r["label"]) for i, r in enumerate(json.loads(src.read_text()))], None

    json_format = labelled.LabelFormat("json", lambda p: p.suffix == ".json", rows, "annotations.json")
    monkeypatch.setattr(labelled, "LABEL_FORMATS", {"json": json_format, **labelled.LABEL_FORMATS})
    data = read_labelled(source)
    assert data.classes == ["jump", "run"] and [Path(s.path).name for s in data.samples] == ["a.mp4", "b.mp4"]
    assert len(read_labelled(tmp_path / "annotations.json", label_format="json")) == 2
    with pytest.raises(ValueError, match="unknown label format 'nosuch'; known: json, kinetics, epic"):
        read_labelled(source, label_format="nosuch")


@pytest.mark.video
def test_finetune_and_evaluate_cli(small, tmp_path):
    _, _, root = small
    common = ["--num-frames", "8", "--resize", "32", "32", "--crop-size", "28", "--workers", "0", "--random-weights"]
    rc = cli_main(
        [
            "finetune",
            "--train",
            str(root / "train.csv"),
            "--val",
            str(root / "val.csv"),
            "--model",
            "r2plus1d_18",
            "--model-args",
            json.dumps(TINY),
            "-o",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--no-flip",
            "--batch-size",
            "4",
            "--accumulation",
            "2",
            "--num-clips",
            "2",
            *common,
        ]
    )
    assert rc == 0
    out = tmp_path / "eval.json"
    rc = cli_main(
        [
            "evaluate",
            "--data",
            str(root / "val.csv"),
            "--model",
            f"local-dir:{tmp_path / 'run' / 'best'}",
            "--num-clips",
            "2",
            "--output",
            str(out),
            *common[:-1],
        ]
    )
    assert rc == 0
    metrics = json.loads(out.read_text())
    assert metrics["videos"] == 7 and metrics["classes"] == ["left", "right"] and "confusion_matrix" in metrics
    confusion = np.array(metrics["confusion_matrix"])
    wrong = [dict(true=t, predicted=p, count=int(confusion[i, j]))
             for i, t in enumerate(metrics["classes"]) for j, p in enumerate(metrics["classes"]) if i != j]  # fmt: skip
    listed = [{k: c[k] for k in ("true", "predicted", "count")} for c in metrics["top_confusions"]]
    assert listed == sorted((w for w in wrong if w["count"]), key=lambda w: -w["count"])
    for picture in ("eval.confusion.png", "eval.per_class.png"):  # beside eval.json
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the papers' training augmentation -------------------------------------------------------------------------------


def test_scale_jitter_draws_short_sides_over_the_whole_range_and_keeps_the_aspect():
    from r21d_zoo.video.transforms import jitter_scale, train_augment

    clips = torch.randint(0, 256, (400, 1, 16, 20, 3), dtype=torch.uint8)
    spec = ClipSpec(num_frames=1, resize_size=None, crop_size=8)
    scaled = jitter_scale(clips, (8, 12), spec, torch.Generator().manual_seed(0))
    sides = [min(c.shape[1:3]) for c in scaled]
    assert set(sides) == set(range(8, 13)) and min(np.bincount(sides)[8:]) > 40  # every side, about evenly
    assert all(int(s * 20 / 16) == c.shape[2] for s, c in zip(sides, scaled))  # 16 x 20: the aspect kept
    out = train_augment(clips, spec, True, torch.Generator().manual_seed(0), jitter_scales=(8, 12))
    assert out.shape == (400, 3, 1, 8, 8)
    # without jitter the augmentation is what it was: one crop draw for the whole batch
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain = train_augment(clips[:4], spec, True, g1)
    tops, lefts = torch.randint(0, 9, (4,), generator=g2).tolist(), torch.randint(0, 13, (4,), generator=g2).tolist()
    flips = (torch.rand(4, generator=g2) < 0.5).tolist()
    first = clips[0, :, tops[0] : tops[0] + 8, lefts[0] : lefts[0] + 8]
    first = (first.flip(2) if flips[0] else first).permute(3, 0, 1, 2).float() / 255.0
    torch.testing.assert_close(plain[0], r21d_zoo.video.normalize(first[None], spec.mean, spec.std)[0])


def test_mixup_and_cutmix_weight_the_targets_by_what_each_clip_keeps():
    from r21d_zoo.video.transforms import mix_batch

    x = torch.stack([torch.full((3, 2, 10, 10), float(i)) for i in range(4)])  # clip i is all i
    target = torch.eye(4)
    mixed, soft = mix_batch(x, target, 0.4, 0.0, torch.Generator().manual_seed(0))
    lam = float(soft[0, 0])
    torch.testing.assert_close(mixed[0], torch.full_like(x[0], 0 * lam + 3 * (1 - lam)))
    assert torch.allclose(soft.sum(1), torch.ones(4)) and float(soft[0, 3]) == pytest.approx(1 - lam)
    for seed in range(5):
        mixed, soft = mix_batch(x, target, 0.0, 1.0, torch.Generator().manual_seed(seed))
        kept = (mixed[0] == 0).float().mean()  # clip 0 keeps its pixels outside the box pasted from clip 3
        assert float(soft[0, 0]) == pytest.approx(float(kept)) and float(soft[0, 3]) == pytest.approx(1 - float(kept))
        box = mixed[0] == 3
        assert torch.equal(box[:, 0], box[:, 1]) and torch.equal(box[0], box[2])  # one box through time and colour
    assert mix_batch(x, target, 0.0, 0.0, torch.Generator())[0] is x


@pytest.mark.video
def test_finetune_with_scale_jitter_and_mixing_trains_and_leaves_evaluation_as_it_was(small, tmp_path):
    train, val, _ = small
    cfg = config(epochs=2, jitter_scales=(30, 40), mixup_alpha=0.2, cutmix_alpha=1.0)
    mixed = finetune(train, val, cfg, out_dir=tmp_path / "run", stop_after_epochs=1, progress=False)
    assert np.isfinite(mixed.history[-1]["train_loss"])
    other = config(epochs=2, jitter_scales=(30, 36), mixup_alpha=0.2, cutmix_alpha=1.0)
    with pytest.raises(ValueError, match="jitter_scales: \\[30, 40\\] then, \\[30, 36\\] now"):  # a setting of the run
        finetune(train, val, other, out_dir=tmp_path / "run", progress=False)
    finetune(train, val, cfg, out_dir=tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["pretrained_cfg"]
    assert saved["resize_size"] == [32, 32] and saved["crop_size"] == 28  # the evaluation clip is the weights'


@pytest.mark.video
def test_training_logs_go_to_tensorboard_and_wandb_offline(small, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train, val, _ = small
    out = tmp_path / "run"
    result = finetune(train, val, config(epochs=2, log_to=["tensorboard", "wandb"]), out_dir=out, progress=False)
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "val/video_top1", "train/clip_top1"} <= set(tags), tags
    losses = [e.value for e in events.Scalars("train/loss")]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert losses == pytest.approx([h["train_loss"] for h in result.history])
    assert events.Tags()["images"] == ["curves"]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb")), list((out / "wandb").iterdir())


def test_a_missing_logging_package_is_named_with_its_extra(tmp_path, monkeypatch):
    import sys

    from r21d_zoo.train.logs import RunLogs

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ValueError, match=r"--log-to wandb needs the wandb package .*pip install 'r21d-zoo\[wandb\]'"):
        RunLogs(tmp_path, ["wandb"])
