"""The field's datasets as they come: miniature copies of the official annotation files and folder layouts (the real
column names, JSON keys and file names, with videos the tests write), read, fine-tuned on, evaluated and extracted."""

import csv
import json
from pathlib import Path

import av
import pytest

from r21d_zoo.cli import main
from r21d_zoo.data.features import FeatureStore
from r21d_zoo.data.labelled import EvalClips, read_labelled
from r21d_zoo import create_model, save_pretrained
from r21d_zoo.models import ClipSpec, evaluation_protocol, load_label_names
from util import TINY, decode_index, index_frame, make_broken, make_video

pytestmark = pytest.mark.video

SIZE = (32, 40)
FPS = 10
COMMON = ["--workers", "0"]
CLIP = ["--num-frames", "4", "--resize", "32", "32", "--crop-size", "28"]
TINY_FINETUNE = ["--model", "r2plus1d_18", "--random-weights", "--model-args", json.dumps(TINY), "--epochs", "1"]
TINY_FINETUNE += ["--batch-size", "2", *CLIP, *COMMON]


def video(path: Path, seconds: float = 2.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_video(path, num_frames=int(seconds * FPS), size=SIZE, fps=FPS)


def webm(path: Path, seconds: float = 2.0) -> Path:
    """A VP9 .webm, as Something-Something v2 ships (frames show their index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        for i in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(index_frame(i, *SIZE), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_csv(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def finetune_evaluate_extract(tmp_path: Path, train: Path, val: Path, videos: Path, options=(), classes=2):
    """One epoch of ``finetune``, ``evaluate`` of its model and ``extract`` over the videos: what a user runs first."""
    run = tmp_path / "run"
    argv = ["finetune", "--train", str(train), "--val", str(val), "-o", str(run), *options, *TINY_FINETUNE]
    assert main(argv) == 0
    assert json.loads((run / "final" / "config.json").read_text())["num_classes"] == classes
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--data", str(val), "--model", f"local-dir:{run / 'final'}", "--num-clips", "2"]
    rc = main([*argv, "--output", str(out), *options, *COMMON])
    metrics = json.loads(out.read_text())
    feats = tmp_path / "feats"
    argv = ["extract", str(videos), "-o", str(feats), "--model", f"local-dir:{run / 'final'}", "--num-clips", "1"]
    assert main([*argv, *COMMON]) in (0, 1)  # 1: a folder's non-video files are never listed; a broken one would be
    return rc, metrics, sorted(Path(name).name for name in FeatureStore(feats).names)


# --- Kinetics ------------------------------------------------------------------------------------------------------

KINETICS_HEADER = ["label", "youtube_id", "time_start", "time_end", "split", "is_cc"]


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    """10 rows of Kinetics' validate.csv over 2 classes: trimmed clips in <split>/<label>/, flat trimmed clips, full
    videos whose segment comes from the times, and 2 videos missing (as 5-10% always are)."""
    root = tmp_path_factory.mktemp("kinetics")
    videos = root / "videos"
    rows = []
    for i in range(10):
        label = ("air drumming", "abseiling")[i % 2]
        youtube_id, start, end = f"yt{i:09d}", 10 + i, 12 + i
        trimmed = f"{youtube_id}_{start:06d}_{end:06d}.mp4"
        if i < 4:
            video(videos / "val" / label.replace(" ", "_") / trimmed)
        elif i < 6:
            video(videos / trimmed)
        elif i < 8:
            video(videos / f"{youtube_id}.mp4", seconds=30)  # the whole YouTube video
        rows.append([label, youtube_id, start, end, "val", 0])
    return write_csv(root / "annotations" / "validate.csv", KINETICS_HEADER, rows), videos


def test_kinetics_annotations_with_every_layout_and_missing_videos_counted(kinetics):
    annotations, videos = kinetics
    data = read_labelled(annotations, video_root=str(videos))
    assert data.classes == ["abseiling", "air drumming"] and len(data) == 10
    assert sorted(Path(p).name for p in data.missing) == [
        "yt000000008_000018_000020.mp4",
        "yt000000009_000019_000021.mp4",
    ]
    by_id = {Path(s.path).name.split("_")[0].split(".")[0]: s for s in data.samples}
    assert (by_id["yt000000006"].start, by_id["yt000000006"].end) == (16.0, 18.0)  # the full video: its segment
    assert by_id["yt000000000"].start is None and by_id["yt000000004"].path == str(
        videos / "yt000000004_000014_000016.mp4"
    )
    assert [data.classes[s.labels[0]] for s in data.samples[:2]] == ["air drumming", "abseiling"]


def test_kinetics_labels_take_the_shipped_kinetics400_order(tmp_path):
    names = load_label_names("kinetics400")
    video(tmp_path / "v" / "yt0_000000_000002.mp4")
    rows = [[name, f"yt{i}", 0, 2, "train", 0] for i, name in enumerate(reversed(names))]
    data = read_labelled(write_csv(tmp_path / "train.csv", KINETICS_HEADER, rows), video_root=str(tmp_path / "v"))
    assert data.classes == list(names) and len(data.missing) == 399


def test_kinetics_finetune_evaluate_extract_with_two_missing(kinetics, tmp_path, capsys):
    annotations, videos = kinetics
    rc, metrics, extracted = finetune_evaluate_extract(
        tmp_path, annotations, annotations, videos, ["--video-root", str(videos)]
    )
    assert rc == 1  # partial: the missing videos are failures of the batch, named, and the rest is scored
    assert metrics["videos"] == 8 and metrics["failed"] == 2 and len(metrics["missing"]) == 2
    assert all("yt000000008" in p or "yt000000009" in p for p in metrics["errors"])
    assert len(extracted) == 8


def test_finetune_leaves_out_missing_training_videos_and_names_classes_it_cannot_learn(tmp_path, caplog):
    """Missing training videos were once replaced by others and a class with none kept, without a word."""
    for i in range(2):
        video(tmp_path / "v" / f"a{i}.mp4", seconds=1)
    rows = [["a0.mp4", "a"], ["a1.mp4", "a"], ["gone0.mp4", "b"], ["gone1.mp4", "a"]]
    train = write_csv(tmp_path / "v" / "train.csv", ["path", "label"], rows)
    out = tmp_path / "run"
    with caplog.at_level("WARNING"):
        assert main(["finetune", "--train", str(train), "-o", str(out), *TINY_FINETUNE]) == 0
    assert "2 of 4 training videos are missing and are left out (first: " in caplog.text
    assert "1 class(es) have no training video, so the model cannot learn them: b" in caplog.text
    assert "on 2 videos of 2 classes" in create_model(f"local-dir:{out / 'final'}").pretrained_cfg["notes"]


# --- HMDB51 --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory):
    """HMDB51's layout: hmdb51/<class>/<video>.avi and testTrainMulti_7030_splits/<class>_test_split<N>.txt."""
    root = tmp_path_factory.mktemp("hmdb")
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir()
    for cls in ("brush_hair", "cartwheel"):
        names = [f"{cls}_v{i}_f_cm_np1_ri_med_{i}.avi" for i in range(5)]
        for name in names:
            video(root / "hmdb51" / cls / name)
        for split, flags in ((1, "11220"), (2, "22110")):
            lines = [f"{name} {flag}" for name, flag in zip(names, flags)]
            (splits / f"{cls}_test_split{split}.txt").write_text(" \n".join(lines) + " \n")  # the files' own spaces
    return splits, root / "hmdb51"


def test_hmdb51_split_files_give_the_train_and_test_parts_of_each_split(hmdb):
    splits, videos = hmdb
    train = read_labelled(splits, video_root=str(videos))
    test = read_labelled(splits, video_root=str(videos), subset="test", classes=train.classes)
    assert train.classes == ["brush_hair", "cartwheel"] and len(train) == 4 and len(test) == 4
    assert {Path(s.path).name for s in train.samples if s.labels == (0,)} == {
        "brush_hair_v0_f_cm_np1_ri_med_0.avi",
        "brush_hair_v1_f_cm_np1_ri_med_1.avi",
    }
    split2 = read_labelled(splits, video_root=str(videos), split=2, subset="test")
    assert {Path(s.path).name[-5] for s in split2.samples} == {"0", "1"}  # flags 2 2 1 1 0
    with pytest.raises(ValueError, match="no split 3 files.*splits here: \\['1', '2'\\]"):
        read_labelled(splits, video_root=str(videos), split=3)


def test_hmdb51_finetune_evaluate_extract(hmdb, tmp_path):
    splits, videos = hmdb
    rc, metrics, extracted = finetune_evaluate_extract(
        tmp_path, splits, splits, videos, ["--video-root", str(videos), "--split", "1"]
    )
    assert rc == 0 and metrics["videos"] == 4 and metrics["failed"] == 0  # the test part: flag 2
    assert len(extracted) == 10


def test_hmdb51_check_videos_and_extract_take_every_listed_video_and_say_which_part(hmdb, tmp_path, caplog):
    """Once only split 1's training part (4 of the 10 listed), without a word."""
    splits, videos = hmdb
    out = tmp_path / "check"
    with caplog.at_level("INFO"):
        assert main(["check-videos", "--data", str(splits), "--video-root", str(videos), "-o", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["videos"] == 10
    assert "split 1, all its videos (--split chooses another split)" in caplog.text
    train = read_labelled(splits, video_root=str(videos))
    assert "split 1, its train videos" in train.describe()


# --- Something-Something v2 ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssv2")
    templates = ["Pushing something from left to right", "Pushing something from right to left"]
    (root / "labels").mkdir()
    (root / "labels" / "labels.json").write_text(json.dumps({t: str(i) for i, t in enumerate(reversed(templates))}))
    parts = {}
    for part, ids in (("train", range(1, 5)), ("validation", range(5, 7))):
        items = []
        for i in ids:
            template = templates[i % 2].replace("something", "[something]")
            items.append(
                dict(
                    id=str(i), label=template.replace("[something]", "a cup"), template=template, placeholders=["a cup"]
                )
            )
            webm(root / "20bn-something-something-v2" / f"{i}.webm")
        parts[part] = root / "labels" / f"{part}.json"
        parts[part].write_text(json.dumps(items))
    return parts, root / "20bn-something-something-v2", templates


def test_ssv2_templates_are_the_labels_in_labels_json_order(ssv2):
    parts, videos, templates = ssv2
    data = read_labelled(parts["train"], video_root=str(videos))
    assert data.classes == list(reversed(templates))  # labels.json's indices, not alphabetical
    assert [(Path(s.path).name, data.classes[s.labels[0]]) for s in data.samples[:2]] == [
        ("1.webm", templates[1]),
        ("2.webm", templates[0]),
    ]


def test_ssv2_finetune_evaluate_extract(ssv2, tmp_path):
    parts, videos, _ = ssv2
    rc, metrics, extracted = finetune_evaluate_extract(
        tmp_path, parts["train"], parts["validation"], videos, ["--video-root", str(videos)]
    )
    assert rc == 0 and metrics["videos"] == 2 and extracted == ["1", "2", "3", "4", "5", "6"]


# --- EPIC-Kitchens-100 ---------------------------------------------------------------------------------------------

EPIC_HEADER = [
    "narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp", "stop_timestamp",
    "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun", "noun_class", "all_nouns",
    "all_noun_classes",
]  # fmt: skip


@pytest.fixture(scope="module")
def epic(tmp_path_factory):
    """Two long videos in <participant>/videos/, six narrated segments of them."""
    root = tmp_path_factory.mktemp("epic")
    for vid in ("P01_01", "P02_03"):
        video(root / "EPIC-KITCHENS" / vid[:3] / "videos" / f"{vid}.MP4", seconds=8)
    rows = []
    actions = [("take", 0, "plate", 2), ("put", 1, "cup", 5), ("take", 0, "cup", 5)]
    for i in range(6):
        vid = ("P01_01", "P02_03")[i % 2]
        verb, verb_class, noun, noun_class = actions[i % 3]
        start, stop = f"00:00:0{i + 1}.00", f"00:00:0{i + 2}.50"
        row = [f"{vid}_{i}", vid[:3], vid, start, start, stop, (i + 1) * 60, (i + 2) * 60 + 30, f"{verb} {noun}"]
        rows.append(row + [verb, verb_class, noun, noun_class, f"['{noun}']", f"[{noun_class}]"])
    train = write_csv(root / "epic-kitchens-100-annotations" / "EPIC_100_train.csv", EPIC_HEADER, rows)
    return train, root / "EPIC-KITCHENS"


def test_epic_narrations_are_segments_labelled_by_verb_or_noun(epic):
    train, videos = epic
    verbs = read_labelled(train, video_root=str(videos))
    assert verbs.classes == ["take", "put"] and [verbs.classes[s.labels[0]] for s in verbs.samples[:3]] == [
        "take",
        "put",
        "take",
    ]
    first = verbs.samples[0]
    assert (first.start, first.end) == (1.0, 2.5) and first.path == str(videos / "P01" / "videos" / "P01_01.MP4")
    nouns = read_labelled(train, video_root=str(videos), label_column="noun")
    assert nouns.classes == ["noun_0", "noun_1", "plate", "noun_3", "noun_4", "cup"]  # noun_class indices
    assert [nouns.classes[s.labels[0]] for s in nouns.samples[:2]] == ["plate", "cup"]


def test_evaluation_clips_lie_inside_the_segment(epic):
    train, videos = epic
    data = read_labelled(train, video_root=str(videos))
    spec = ClipSpec(num_frames=4, resize_size=None, crop_size=28)
    for index in (0, 5):
        frames, _, _, error = EvalClips(data, spec, num_clips=3)[index]
        sample = data.samples[index]
        shown = [decode_index(f.numpy()) for f in frames.flatten(0, 1)]
        assert not error and min(shown) >= sample.start * FPS - 1e-6 and max(shown) < sample.end * FPS, shown


def test_epic_finetune_evaluate_extract(epic, tmp_path):
    train, videos = epic
    rc, metrics, extracted = finetune_evaluate_extract(tmp_path, train, train, videos, ["--video-root", str(videos)])
    assert rc == 0 and metrics["videos"] == 6 and extracted == ["P01_01", "P02_03"]


EXTRACT = ["--random-weights", "--model-args", json.dumps(TINY), *CLIP, *COMMON, "--stride-sec", "0.5"]


def manifest(folder: Path) -> dict:
    return {r["name"]: r for r in map(json.loads, (folder / "manifest.jsonl").read_text().splitlines())}


def test_extract_over_epic_segments_names_them_by_narration_with_the_action_pair(epic, tmp_path, capsys):
    train, videos = epic
    out = tmp_path / "feats"
    argv = ["extract", "--data", str(train), "--video-root", str(videos), "-o", str(out), *EXTRACT]
    assert main(argv) == 0
    store, lines = FeatureStore(out), manifest(out)
    assert sorted(store.names) == sorted(f"{vid}_{i}" for i, vid in enumerate(["P01_01", "P02_03"] * 3))
    for i in range(6):
        name = f"{('P01_01', 'P02_03')[i % 2]}_{i}"
        start, stop = i + 1.0, i + 2.5  # the narration's timestamps
        times = store.read(name).clip_times
        assert times[0, 0] == start and times[:, 0].tolist() == [start + 0.5 * k for k in range(len(times))]
        assert times[-1, 0] < stop and lines[name]["segment"] == [start, stop]  # clips start inside the segment
        verb, verb_class, noun, noun_class = [("take", 0, "plate", 2), ("put", 1, "cup", 5), ("take", 0, "cup", 5)][
            i % 3
        ]
        assert lines[name]["annotation"] == dict(
            verb=verb, verb_class=str(verb_class), noun=noun, noun_class=str(noun_class)
        )
    assert main(argv) == 0 and "6 already done" in capsys.readouterr().out
    assert main([*argv[:1], str(videos), *argv[1:]]) == 3  # videos and --data: one of the two
    assert "one of the two" in capsys.readouterr().err


def test_evaluate_saves_each_segments_scores_with_the_action_pair(epic, tmp_path):
    train, videos = epic
    run, scores = tmp_path / "run", tmp_path / "scores.jsonl"
    root = ["--video-root", str(videos)]
    assert main(["finetune", "--train", str(train), "-o", str(run), *root, *TINY_FINETUNE]) == 0
    argv = ["evaluate", "--data", str(train), *root, "--model", f"local-dir:{run / 'final'}", "--num-clips", "1"]
    assert main([*argv, *COMMON, "--save-scores", str(scores)]) == 0
    records = [json.loads(line) for line in scores.read_text().splitlines()]
    assert [r["key"] for r in records] == [f"{('P01_01', 'P02_03')[i % 2]}_{i}" for i in range(6)]
    first = records[0]
    assert first["labels"] == ["take"] and first["segment"] == [1.0, 2.5]
    assert (first["annotation"]["verb"], first["annotation"]["noun"]) == ("take", "plate")
    assert len(first["scores"]) == 2 and abs(sum(first["scores"]) - 1) < 1e-4
    assert first["top"][0]["score"] == max(first["scores"])


def test_extract_over_kinetics_annotations_names_clips_as_kinetics_does(kinetics, tmp_path):
    annotations, videos = kinetics
    out = tmp_path / "feats"
    argv = ["extract", "--data", str(annotations), "--video-root", str(videos), "-o", str(out), *EXTRACT]
    assert main(argv) == 1  # the two missing videos are failures, named in the manifest
    lines = manifest(out)
    assert sorted(n for n, r in lines.items() if r["status"] == "error") == [
        "yt000000008_000018_000020",
        "yt000000009_000019_000021",
    ]
    full = FeatureStore(out).read("yt000000006_000016_000018")  # cut from the whole video by its times
    assert full.clip_times[0, 0] == 16.0 and full.clip_times[-1, 0] < 18.0
    assert FeatureStore(out).read("yt000000000_000010_000012").clip_times[0, 0] == 0.0  # a trimmed clip


# --- generic segments ----------------------------------------------------------------------------------------------


def test_any_csv_with_start_and_end_columns_is_segments(tmp_path):
    video(tmp_path / "long.mp4", seconds=6)
    source = write_csv(tmp_path / "segments.csv", ["video", "label", "start", "end"], [["long.mp4", "a", 0.5, 2]])
    sample = read_labelled(source).samples[0]
    assert (sample.start, sample.end) == (0.5, 2.0)
    bad = write_csv(tmp_path / "bad.csv", ["video", "label", "start", "end"], [["long.mp4", "a", 3, 2]])
    with pytest.raises(ValueError, match="bad.csv:2: the segment ends"):
        read_labelled(bad)
    with pytest.raises(ValueError, match="bad2.csv: the header names a segment start column but no end"):
        read_labelled(write_csv(tmp_path / "bad2.csv", ["video", "label", "start"], [["long.mp4", "a", 3]]))


def test_segment_finetune_evaluate_extract_and_pack_refuses_segments(tmp_path, capsys):
    videos = tmp_path / "videos"
    rows = []
    for i in range(4):
        video(videos / f"long{i}.mp4", seconds=5)
        rows += [[f"videos/long{i}.mp4", "a", 0, 2], [f"videos/long{i}.mp4", "b", 2.5, 4.5]]
    source = write_csv(tmp_path / "segments.csv", ["path", "label", "start_time", "end_time"], rows)
    rc, metrics, extracted = finetune_evaluate_extract(tmp_path, source, source, videos)
    assert rc == 0 and metrics["videos"] == 8 and len(extracted) == 4
    out = tmp_path / "segment-feats"
    assert main(["extract", "--data", str(source), "-o", str(out), *EXTRACT]) == 0
    assert sorted(FeatureStore(out).names) == sorted(f"long{i}@{s}" for i in range(4) for s in ("0-2", "2.5-4.5"))
    assert main(["shards", "pack", str(source), "-o", str(tmp_path / "shards")]) == 3
    assert "segments of longer videos" in capsys.readouterr().err


def test_label_format_can_be_named_and_a_wrong_one_is_an_error(kinetics, tmp_path, capsys):
    annotations, videos = kinetics
    assert len(read_labelled(annotations, video_root=str(videos), label_format="kinetics")) == 10
    assert main(["evaluate", "--data", str(annotations), "--label-format", "epic", "--random-weights", *COMMON]) == 3
    assert "no verb and verb_class columns" in capsys.readouterr().err


def test_ucf101_lists_take_their_videos_from_the_video_root(tmp_path):
    video(tmp_path / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi")
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n")
    data = read_labelled(lists / "trainlist01.txt", video_root=str(tmp_path / "UCF-101"))
    assert data.classes == ["ApplyEyeMakeup"] and not data.missing


# --- check-videos --------------------------------------------------------------------------------------------------


def test_check_videos_reports_exactly_the_broken_files_and_its_list_excludes_them(tmp_path, capsys):
    root = tmp_path / "dataset"
    for i in range(3):
        video(root / "up" / f"v{i}.mp4", seconds=1.5)
    make_broken("truncated", root / "up" / "truncated.mp4", root / "up" / "v0.mp4")
    make_broken("empty", root / "up" / "empty.mp4")
    (root / "up" / "text.mp4").write_text("this is not a video\n")
    out = tmp_path / "check"
    assert main(["check-videos", str(root), "-o", str(out), *COMMON]) == 1  # partial: all checked, bad ones listed
    bad = sorted(Path(p).name for p in (out / "bad.txt").read_text().split())
    assert bad == ["empty.mp4", "text.mp4", "truncated.mp4"]
    records = {Path(r["path"]).name: r for r in map(json.loads, (out / "report.jsonl").read_text().splitlines())}
    assert records["v1.mp4"]["ok"] and records["v1.mp4"]["frames"] == 15 and records["v1.mp4"]["fps"] == FPS
    assert (records["v1.mp4"]["width"], records["v1.mp4"]["height"]) == (SIZE[1], SIZE[0])
    assert all(records[name]["error"] for name in bad)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["videos"], summary["ok"], summary["bad"]) == (6, 3, 3)
    assert "3 of 6 videos decode" in capsys.readouterr().out
    assert main(["check-videos", str(root), "-o", str(out), *COMMON]) == 1  # resumed: nothing checked twice
    assert len((out / "report.jsonl").read_text().splitlines()) == 6
    # the list, passed back, makes the next jobs skip those files
    feats = tmp_path / "feats"
    extract = ["extract", str(root), "-o", str(feats), "--random-weights", "--model", "r2plus1d_18", *CLIP, *COMMON]
    assert (
        main([*extract, "--model-args", json.dumps(TINY), "--num-clips", "1", "--exclude", str(out / "bad.txt")]) == 0
    )
    assert sorted(Path(n).name for n in FeatureStore(feats).names) == ["v0", "v1", "v2"]
    data = read_labelled(root, exclude=set((out / "bad.txt").read_text().split()))
    assert len(data) == 3 and len(data.left_out) == 3


def test_a_check_videos_rerun_checks_again_what_changed_since(tmp_path, capsys):
    """Reruns once trusted the old report by path: a good file truncated to 0 bytes stayed "ok" (and extract then
    failed on it), a repaired file stayed bad."""
    good, bad = video(tmp_path / "v" / "good.mp4", seconds=1), tmp_path / "v" / "bad.mp4"
    bad.write_text("not a video\n")
    out = tmp_path / "check"
    assert main(["check-videos", str(tmp_path / "v"), "-o", str(out), *COMMON]) == 1
    good.write_bytes(b"")  # broken since
    video(bad, seconds=1)  # repaired since
    assert main(["check-videos", str(tmp_path / "v"), "-o", str(out), *COMMON]) == 1
    assert [Path(p).name for p in (out / "bad.txt").read_text().split()] == ["good.mp4"]
    assert main(["check-videos", str(tmp_path / "v"), "-o", str(out), *COMMON]) == 1  # unchanged: not checked again
    assert len((out / "report.jsonl").read_text().splitlines()) == 4


def test_check_videos_on_a_dataset_reports_segments_outside_their_video(tmp_path):
    video(tmp_path / "long.mp4", seconds=4)
    rows = [["long.mp4", "a", 0.5, 2], ["long.mp4", "b", 3, 9], ["long.mp4", "a", 5, 6]]
    source = write_csv(tmp_path / "segments.csv", ["path", "label", "start", "end"], rows)
    out = tmp_path / "check"
    assert main(["check-videos", "--data", str(source), "-o", str(out), *COMMON]) == 0  # the video itself decodes
    (record,) = map(json.loads, (out / "report.jsonl").read_text().splitlines())
    assert record["ok"] and record["segments_outside"] == [[3.0, 9.0], [5.0, 6.0]]
    assert json.loads((out / "summary.json").read_text())["segments_outside"] == 2


# --- published vs measured -----------------------------------------------------------------------------------------


def test_protocols_are_read_from_the_published_metrics():
    assert evaluation_protocol("10 uniform clips x 1 centre crop, softmax averaged") == dict(
        num_clips=10, crop_mode="center"
    )
    assert evaluation_protocol("10 clips x 3 crops of 256 (convolutional prediction)")["crop_mode"] == "three"
    assert evaluation_protocol("5 clips of 16 frames at 15 fps, resize 128x171, centre crop 112, video-level") == dict(
        num_clips=5, crop_mode="center"
    )
    assert evaluation_protocol("single clip") == dict(num_clips=1, crop_mode="center")
    assert evaluation_protocol("dense prediction over the whole video (Tran et al. 2018, Table 5)") is None


def test_a_kinetics400_tag_on_kinetics_annotations_reports_published_beside_measured(kinetics, tmp_path, capsys):
    """The weights cannot be downloaded here: a model with the tag's cfg (its head, classes and published numbers) and
    random weights stands in; what is checked is the protocol used and the report, not the accuracy."""
    annotations, videos = kinetics
    save_pretrained(create_model("r3d_18.tv_kinetics400_16f", pretrained=False, **TINY), tmp_path / "random")
    weights = str(tmp_path / "random" / "model.safetensors")  # loaded as the tag's weights: the tag's claims hold
    save_pretrained(create_model("r3d_18.tv_kinetics400_16f", checkpoint_path=weights, **TINY), tmp_path / "k400")
    out = tmp_path / "eval.json"
    argv = [
        "evaluate",
        "--data",
        str(annotations),
        "--video-root",
        str(videos),
        "--model",
        f"local-dir:{tmp_path / 'k400'}",
    ]
    assert main([*argv, "--output", str(out), "--num-frames", "4", "--crop-size", "28", *COMMON]) == 1  # 2 missing
    metrics = json.loads(out.read_text())
    assert metrics["num_clips"] == 5 and metrics["crop_mode"] == "center"  # torchvision's protocol: 5 clips
    published = {p["metric"]: p for p in metrics["published"]}
    assert published["video_top1"]["published"] == 63.2 and published["video_top1"]["dataset"] == "kinetics400-val"
    assert published["video_top1"]["measured"] == round(100 * metrics["video_top1"], 3)
    assert published["video_top1"]["difference"] == round(published["video_top1"]["measured"] - 63.2, 3)
    shown = capsys.readouterr().out
    assert (
        "video_top1 on kinetics400-val: measured" in shown
        and "published 63.200" in shown
        and "5 clips x center" in shown
    )
    assert (
        main([*argv, "--output", str(out), "--num-clips", "2", "--num-frames", "4", "--crop-size", "28", *COMMON]) == 1
    )
    assert json.loads(out.read_text())["num_clips"] == 2  # an explicit choice wins


@pytest.mark.parametrize("fixture", ["kinetics", "hmdb", "ssv2", "epic", "csv", "list", "folders"])
def test_relative_and_absolute_annotation_paths_and_roots_read_the_same_videos(fixture, request, tmp_path, monkeypatch):
    """One rule for every label format: a relative annotation path or ``--video-root`` is taken from the current
    folder, relative paths inside a list from the root (default: the list's folder); every sample's path is
    absolute. Kinetics, SSv2 and EPIC once doubled a relative root (``kin/videos/kin/videos/...``)."""
    if fixture in ("csv", "list", "folders"):
        base = tmp_path / "own"
        for i in range(2):
            video(base / "clips" / ("a", "b")[i] / f"v{i}.mp4", seconds=0.5)
        source = {
            "csv": write_csv(base / "lists" / "train.csv", ["path", "label"], [["a/v0.mp4", "a"], ["b/v1.mp4", "b"]]),
            "list": base / "lists" / "trainlist01.txt",
            "folders": base / "clips",
        }[fixture]
        if fixture == "list":
            source.write_text("a/v0.mp4 1\nb/v1.mp4 2\n")
        videos = None if fixture == "folders" else base / "clips"
    else:
        source, videos = request.getfixturevalue(fixture)[:2]
        source = source["train"] if fixture == "ssv2" else source
    base = videos.parent if videos is not None else source.parent
    monkeypatch.chdir(base.parent)
    relative = lambda p: None if p is None else str(Path(p).relative_to(base.parent))  # noqa: E731
    read = [
        read_labelled(src, video_root=root)
        for src in (str(source), relative(source))
        for root in (None if videos is None else str(videos), relative(videos))
    ]
    paths = [[s.path for s in data.samples] for data in read]
    assert all(p == paths[0] for p in paths) and all(Path(p).is_absolute() for p in paths[0])
    assert all(len(data.missing) == len(read[0].missing) for data in read)
    assert sum(Path(p).exists() for p in paths[0]) == len(paths[0]) - len(read[0].missing) > 0
