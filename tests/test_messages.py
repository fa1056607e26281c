"""The message audit: each refusal path of the commands, table-driven. Each must exit with its class (2 usage,
3 input or set-up), name the file or flag at fault, name only flags its command has, offer a fix that fits the cause,
show no traceback, and leave nothing behind."""

import errno
import re
import shlex

import pytest

import r21d_zoo
from r21d_zoo.cli import build_parser, command_table, main
from util import TINY, make_video

# (command line, exit code, what the message must say). Run in a folder holding good.mp4 (a video), text.mp4 (not a
# video), train.csv (labels a, b of good.mp4) and tiny/ (a saved 2-class model).
REFUSALS = [
    ("info nosuch_model", 2, ["unknown model 'nosuch_model'", "r21d-zoo list"]),
    ("predict good.mp4 --model local-dir:tiny --explain", 2, ["--explain", "give -o OUT"]),
    ("predict good.mp4 --model local-dir:tiny --explain -o p --layer layer9", 3, ["--layer", "'layer9'", "stem"]),
    ("predict good.mp4 --flow-weight 0.3", 2, ["--flow-weight", "--flow-model"]),
    ("explain good.mp4 -o c --model local-dir:tiny --layer pre_logits", 3, ["--layer", "'pre_logits'", "layer4"]),
    ("explain good.mp4 -o c --model local-dir:tiny --target nosuch", 3, ["--target 'nosuch'", "(0, 1)"]),
    ("explain good.mp4 -o c --model local-dir:tiny --crop three", 3, ["--crop three", "drop --crop"]),
    ("explain text.mp4 -o c --model local-dir:tiny", 3, ["text.mp4", "not a video"]),
    ("extract good.mp4 -o e --model local-dir:tiny --layer layer9", 3, ["'layer9'", "'pre_logits', 'logits'"]),
    ("extract good.mp4 -o good.mp4 --model local-dir:tiny", 3, ["-o good.mp4", "existing file", "another -o"]),
    ("extract good.mp4 -o e --model nosuch_model", 2, ["'nosuch_model'"]),
    ("extract good.mp4 -o e --model local-dir:nosuch", 3, ["nosuch: no such folder", "save_pretrained"]),
    ("extract good.mp4 -o e --model local-dir:tiny --format nosuch", 2, ["--format", "npy"]),
    ("extract good.mp4 -o e --model local-dir:tiny --model-args '{\"nosuch\": 1}'", 2, ["--model-args", "'nosuch'"]),
    ("extract good.mp4 -o e --feature-fps 2 --num-clips 2", 2, ["--feature-fps", "--num-clips", "give one"]),
    ("extract good.mp4 -o e --num-clips 2 --stride-sec 1", 2, ["--stride-sec", "--num-clips"]),
    ("extract good.mp4 -o e --mean nan 0 0", 2, ["--mean nan", "finite"]),
    ("extract good.mp4 -o e --model local-dir:tiny --model-arg '{}'", 2, ["unrecognized arguments: --model-arg"]),
    ("extract good.mp4 -o e --model local-dir:tiny --address 127.0.0.1:6379", 2, ["--address", "--engine ray"]),
    ("extract good.mp4 -o e --model local-dir:tiny --engine ray --amp int8 --runtime onnxruntime", 3,
     ["--amp int8", "--engine local"]),
    ("predict --live /dev/video9 --model local-dir:tiny", 3, ["/dev/video9", "no such camera", "ls /dev/video*"]),
    ("predict --live ftp://host/x --model local-dir:tiny", 3, ["ftp://host/x", "not a live source", "rtsp"]),
    ("predict good.mp4 --live - --model local-dir:tiny", 2, ["--live", "video inputs", "predict files"]),
    ("predict --live - --smooth 3 --model local-dir:tiny", 2, ["--live", "--smooth"]),
    ("finetune --train nosuch.csv -o f --model local-dir:tiny", 3, ["nosuch.csv", "no such annotation file"]),
    ("finetune --train train.csv --val nosuch.csv -o f --model local-dir:tiny", 3, ["nosuch.csv"]),
    ("evaluate --data nosuch.csv --model local-dir:tiny", 3, ["nosuch.csv", "no such annotation file"]),
    ("evaluate --data train.csv --model local-dir:tiny", 3, ["train.csv:1", "'a'", "--exclude-unknown"]),
    ("evaluate --data train.csv --flow-weight 0.2", 2, ["--flow-weight", "--flow-model"]),
    ("evaluate --data train.csv --model local-dir:tiny --output good.mp4/x.json", 3, ["--output", "another --output"]),
    ("export local-dir:tiny -o x.tflite", 3, ["x.tflite", ".onnx or .pt2"]),
    ("export local-dir:tiny -o x.onnx --model-args '[1]'", 2, ["--model-args", "JSON object"]),
    ("check-videos -o cv", 3, ["--data"]),
    ("shards pack nosuch.csv -o s", 3, ["nosuch.csv"]),
    ("shards stats nosuch_dir", 3, ["nosuch_dir", "does not exist"]),
    ("pretrain nosuch_dir -o pt --model r3d_18", 3, ["nosuch_dir", "does not exist"]),
    ("demo --checkpoint nosuch.pt", 3, ["nosuch.pt", "does not exist"]),
    ("verify-weights nosuch_model", 2, ["'nosuch_model'"]),
    ("serve --model local-dir:nosuch", 3, ["nosuch: no such folder"]),
    ("finetune --train train.csv -o f --epochs 0", 2, ["--epochs 0", "at least 1"]),
    ("finetune --train train.csv -o f --config nosuch.yaml", 3, ["nosuch.yaml"]),
    ("list --filter 'x*'", 2, ["unrecognized arguments: --filter"]),
    ("cards cards --readme good.mp4/x.md", 3, ["--readme good.mp4/x.md", "cannot read it"]),
    ("cards cards --readme train.csv", 3, ["--readme train.csv has no", "markers"]),
    ("synthetic good.mp4 --videos-per-class 2", 3, ["OUT good.mp4 is an existing file", "choose another OUT"]),
    ("synthetic s --videos-per-class 0", 2, ["--videos-per-class 0", "at least 1"]),
    ("shards subset nosuch_dir -o sub.txt --n 3", 3, ["nosuch_dir", "does not exist"]),
    ("dedup --pretrain nosuch --target nosuch2 -o d.json", 3, ["nosuch: no such feature folder", "extract"]),
    ("probe --train-features nosuch --test-features nosuch2 --train train.csv --test train.csv", 3, ["nosuch"]),
    ("distill --teacher nosuch_model -o di train.csv", 2, ["--teacher 'nosuch_model' is not a timm model"]),
    ("publish --tags nosuch_model --dry-run pub", 2, ["nosuch_model"]),
    ("convert nosuch.pkl --model r2plus1d_18 -o conv", 3, ["nosuch.pkl"]),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    make_video(root / "good.mp4", num_frames=8, size=(32, 32))
    (root / "text.mp4").write_text("hello\n")
    (root / "train.csv").write_text("good.mp4,a\ngood.mp4,b\n")
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=2, **TINY)
    model.pretrained_cfg.update(num_frames=4, resize_size=(32, 32), crop_size=28)
    r21d_zoo.save_pretrained(model, root / "tiny")
    return root


def _flags_of(words) -> set:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[words[0]]
    if len(words) > 1:
        sub = sub._subparsers._group_actions[0].choices[words[1]]
    return {flag for action in sub._actions for flag in action.option_strings}


@pytest.mark.video
@pytest.mark.parametrize("line, code, says", REFUSALS, ids=[r[0][:60] for r in REFUSALS])
def test_every_refusal_names_the_fault_and_a_fix_that_exists(line, code, says, folder, monkeypatch, capsys):
    monkeypatch.chdir(folder)
    before = sorted(p.name for p in folder.iterdir())
    argv = shlex.split(line)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own refusals
        rc = e.code
    assert rc == code, capsys.readouterr()
    said = " ".join(capsys.readouterr())
    for fragment in says:
        assert fragment in said, f"{line!r} should say {fragment!r}:\n{said}"
    assert "Traceback" not in said
    words = next(w for w in command_table() if tuple(argv[: len(w)]) == w)
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", said)) - {"--debug"}
    unknown = named - _flags_of(words) if "unrecognized arguments" not in said else set()
    assert not unknown, f"{line!r} names flags {words[0]} does not have: {unknown}\n{said}"
    assert sorted(p.name for p in folder.iterdir()) == before, "a refused run must leave nothing behind"


def test_the_audit_covers_every_command_that_can_refuse():
    audited = {next(w for w in command_table() if tuple(shlex.split(r[0])[: len(w)]) == w) for r in REFUSALS}
    assert set(command_table()) - audited == set(), "add the command's refusals to REFUSALS"


def test_a_file_the_user_may_not_read_is_not_called_corrupt(monkeypatch, tmp_path):
    """A permission error was once blamed on the video ("re-encode it"); as root the test cannot chmod it away."""
    import av

    from r21d_zoo.video import VideoDecodeError, open_video

    video = make_video(tmp_path / "v.mp4", num_frames=4)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(video))

    monkeypatch.setattr(av, "open", denied)
    with pytest.raises(VideoDecodeError) as refused:
        open_video(video)
    assert "permissions" in str(refused.value) and "re-encode" not in str(refused.value)
