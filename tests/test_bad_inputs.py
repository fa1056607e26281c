"""Every command against bad input: one clear line naming the cause, the documented exit code, no traceback, nothing
written or lost. Plus the network limits (a stalled server, offline mode) and evaluation in the model's label space."""

import json
import socket
import threading
import time

import pytest
import torch

import r21d_zoo
from r21d_zoo.cli import EXIT_INPUT, EXIT_USAGE, main
from r21d_zoo.data.synthetic import make_motion_dataset
from r21d_zoo.models import set_derived_cfg
from util import TINY, make_broken

pytestmark = pytest.mark.video

CLIP = dict(num_frames=8, resize_size=(32, 32), crop_size=28)
COMMON = ["--workers", "0"]
# a one-epoch fine-tune of a random tiny R(2+1)D-18 on 8-frame 28x28 clips
TINY_FINETUNE = [
    "--model",
    "r2plus1d_18",
    "--random-weights",
    "--model-args",
    json.dumps(TINY),
    "--epochs",
    "1",
    "--num-frames",
    "8",
    "--resize",
    "32",
    "32",
    "--crop-size",
    "28",
    "--batch-size",
    "4",
    *COMMON,
]


def tiny_model(classes, bias=None):
    """A tiny R(2+1)D-18 with its own classes; with ``bias`` it always predicts the argmax of ``bias``."""
    torch.manual_seed(0)
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=len(classes), **TINY).eval()
    set_derived_cfg(model, labels=tuple(classes), num_classes=len(classes), clip=CLIP)
    if bias is not None:
        with torch.no_grad():
            model.fc.weight.zero_()
            model.fc.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return model


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    videos = root / "videos"
    train, _ = make_motion_dataset(videos, 2, 0, num_frames=8, size=32, directions=("up", "down", "left", "right"))
    rows = [line for line in train.read_text().splitlines()[1:]]
    up_down = [r for r in rows if r.endswith((",up", ",down"))]
    files = dict(
        empty=(root / "empty.csv", ""),
        one_column=(root / "one_column.csv", "\n".join(r.split(",")[0] for r in up_down) + "\n"),
        unknown_header=(root / "unknown_header.csv", "video_id,tag\n" + "\n".join(up_down) + "\n"),
        malformed=(root / "malformed.csv", up_down[0] + "\n" + up_down[1].split(",")[0] + "\n"),
        all_missing=(root / "all_missing.csv", "path,label\nnope/a.mp4,up\nnope/b.mp4,down\n"),
        sideways=(root / "sideways.csv", "\n".join(up_down) + "\n" + up_down[0].split(",")[0] + ",sideways\n"),
    )
    for path, text in files.values():
        path.write_text(text.replace("up/", "videos/up/").replace("down/", "videos/down/"))
    model_dir = root / "model"
    r21d_zoo.save_pretrained(tiny_model(["left", "up", "down"], bias=[0, 10, 0]), str(model_dir))
    bad_configs = {}
    for kind, text in dict(not_json="{oops", a_list="[1, 2]", odd_args=None).items():
        d = root / f"config_{kind}"
        d.mkdir()
        (d / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
        if text is None:
            config = json.loads((model_dir / "config.json").read_text())
            config["model_args"]["wings"] = 2
            text = json.dumps(config)
        (d / "config.json").write_text(text)
        bad_configs[kind] = d
    evil = root / "evil.pth"
    evil.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    (root / "a_file").write_text("not a folder")
    for name, content in dict(garbage=b"\x00garbage" * 50, empty=b"", evil=evil.read_bytes()).items():
        (root / f"run_{name}").mkdir()
        (root / f"run_{name}" / "last.pt").write_bytes(content)
    broken = make_broken("random", root / "broken.mp4")
    return dict(
        root=root,
        files={k: v[0] for k, v in files.items()},
        model=f"local-dir:{model_dir}",
        configs=bad_configs,
        evil=evil,
        broken=broken,
        train=train,
        up_down=root / "up_down.csv",
    )


def _cases():
    """(id, argv from env, exit code, regex the message must match, paths under the env root that must not exist)."""
    return [
        (
            "evaluate-empty-csv",
            lambda e: [
                "evaluate",
                "--data",
                e["files"]["empty"],
                "--model",
                e["model"],
                "--output",
                e["root"] / "out1.json",
            ],
            EXIT_INPUT,
            r"empty\.csv: no rows",
            ["out1.json"],
        ),
        (
            "finetune-empty-csv",
            lambda e: ["finetune", "--train", e["files"]["empty"], "--model", e["model"], "-o", e["root"] / "run1"],
            EXIT_INPUT,
            r"no rows",
            ["run1"],
        ),
        (
            "probe-empty-csv",
            lambda e: [
                "probe",
                "--train",
                e["files"]["empty"],
                "--test",
                e["files"]["empty"],
                "--train-features",
                e["root"],
            ],
            EXIT_INPUT,
            r"no rows",
            [],
        ),
        (
            "no-label-column",
            lambda e: ["evaluate", "--data", e["files"]["one_column"], "--model", e["model"]],
            EXIT_INPUT,
            r"one_column\.csv:1: expected a path and a label",
            [],
        ),
        (
            "unrecognised-header",
            lambda e: [
                "finetune",
                "--train",
                e["files"]["unknown_header"],
                "--model",
                e["model"],
                "-o",
                e["root"] / "run2",
            ],
            EXIT_INPUT,
            r":1: the first row .*--label-column",
            ["run2"],
        ),
        (
            "malformed-row",
            lambda e: [
                "probe",
                "--train",
                e["files"]["malformed"],
                "--test",
                e["files"]["malformed"],
                "--train-features",
                e["root"],
            ],
            EXIT_INPUT,
            r"malformed\.csv:2:",
            [],
        ),
        (
            "train-files-all-missing",
            lambda e: [
                "finetune",
                "--train",
                e["files"]["all_missing"],
                "--model",
                e["model"],
                "-o",
                e["root"] / "run3",
            ],
            EXIT_INPUT,
            r"none of the 2 listed videos",
            ["run3"],
        ),
        (
            "unknown-label",
            lambda e: ["evaluate", "--data", e["files"]["sideways"], "--model", e["model"]],
            EXIT_INPUT,
            r"label 'sideways' is not one of the 3 classes .*--exclude-unknown",
            [],
        ),
        (
            "config-not-json",
            lambda e: [
                "evaluate",
                "--data",
                e["files"]["sideways"],
                "--model",
                f"local-dir:{e['configs']['not_json']}",
            ],
            EXIT_INPUT,
            r"config_not_json/config\.json is not valid JSON",
            [],
        ),
        (
            "config-a-list",
            lambda e: [
                "extract",
                e["broken"],
                "--model",
                f"local-dir:{e['configs']['a_list']}",
                "-o",
                e["root"] / "feats0",
            ],
            EXIT_INPUT,
            r"config_a_list/config\.json .*JSON object",
            [],
        ),
        (
            "config-odd-model-args",
            lambda e: [
                "extract",
                e["broken"],
                "--model",
                f"local-dir:{e['configs']['odd_args']}",
                "-o",
                e["root"] / "feats1",
            ],
            EXIT_INPUT,
            r"model_args .*wings",
            [],
        ),
        (
            "out-is-a-file",
            lambda e: ["extract", e["broken"], "--model", e["model"], "-o", e["root"] / "a_file"],
            EXIT_INPUT,
            r"-o .*a_file is an existing file",
            [],
        ),
        (
            "out-not-writable",
            lambda e: ["extract", e["broken"], "--model", e["model"], "-o", e["root"] / "a_file" / "sub"],
            EXIT_INPUT,
            r"cannot write to -o",
            [],
        ),
        (
            "bad-model-args-json",
            lambda e: [
                "extract",
                e["broken"],
                "--model",
                e["model"],
                "-o",
                e["root"] / "feats2",
                "--model-args",
                "{bad",
            ],
            EXIT_USAGE,
            r"--model-args.*not valid JSON",
            ["feats2"],
        ),
        (
            "unknown-model-arg",
            lambda e: ["extract", e["broken"], "--model", "r2plus1d_18", "--random-weights", "-o", e["root"] / "f5"]
            + ["--model-args", '{"nosuch": 1}'],
            EXIT_USAGE,
            r"--model-args: .* takes no argument 'nosuch'.*the arguments it takes: num_classes, in_chans, drop_rate",
            ["f5/manifest.jsonl"],
        ),
        (
            "unknown-option-of-a-subcommand",
            lambda e: ["shards", "stats", e["root"], "--nosuch"],
            EXIT_USAGE,
            r"usage: r21d-zoo shards stats .*r21d-zoo shards stats: error: unrecognized arguments: --nosuch",
            [],
        ),
        (
            "stats-out-is-a-folder",
            lambda e: ["shards", "stats", e["root"] / "no_shards", "-o", e["root"]],
            EXIT_INPUT,
            r"-o .* is a folder; give a file name",
            [],
        ),
        (
            "unknown-layer",
            lambda e: [
                "extract",
                e["train"].parent / "up",
                "--model",
                e["model"],
                "-o",
                e["root"] / "feats3",
                "--layer",
                "layer9",
            ],
            EXIT_INPUT,
            r"unknown layer 'layer9'",
            ["feats3/manifest.jsonl"],
        ),
        (
            "demo-missing-video",
            lambda e: ["demo", "--video", e["root"] / "nope.mp4", "--model", e["model"]],
            EXIT_INPUT,
            r"nope\.mp4: cannot open.*check the path",
            [],
        ),
        (
            "demo-broken-video",
            lambda e: ["demo", "--video", e["broken"], "--model", e["model"]],
            EXIT_INPUT,
            r"broken\.mp4: cannot open",
            [],
        ),
        (
            "finetune-offline-weights",
            lambda e: [
                "finetune",
                "--train",
                e["train"],
                "--model",
                "r2plus1d_18.kinetics400_16f",
                "-o",
                e["root"] / "run4",
            ],
            EXIT_INPUT,
            r"(?s)could not fetch weights.*offline mode.*--checkpoint FILE.*--random-weights",
            [],
        ),
        (
            "evaluate-offline-weights",
            lambda e: ["evaluate", "--data", e["train"], "--model", "r2plus1d_18.kinetics400_16f"],
            EXIT_INPUT,
            r"(?s)offline mode.*--checkpoint FILE.*--random-weights",
            [],
        ),
        (
            "unknown-model",
            lambda e: ["info", "r2plus1d_43"],
            EXIT_USAGE,
            r"unknown model 'r2plus1d_43'.*Did you mean",
            [],
        ),
        (
            "malicious-checkpoint",
            lambda e: ["evaluate", "--data", e["train"], "--model", "r2plus1d_18", "--checkpoint", e["evil"]],
            EXIT_INPUT,
            r"refused to load .*evil\.pth: besides tensors it asks to load os\.system.*nothing in it was executed",
            [],
        ),
        *(
            (
                f"finetune-{name}-last-pt",
                lambda e, name=name: ["finetune", "--train", e["train"], "-o", e["root"] / f"run_{name}"]
                + TINY_FINETUNE,
                EXIT_INPUT,
                rf"run_{name}/last\.pt.*{reason}.*delete it to start the run over, or train into another -o",
                [f"run_{name}/final", f"run_{name}/metrics.json"],
            )
            for name, reason in (
                ("garbage", "truncated or corrupted"),
                ("empty", "truncated or corrupted"),
                ("evil", "asks to load os.system.*nothing in it was executed"),
            )
        ),
        (
            "distill-timm-teacher-offline",
            lambda e: ["distill", e["train"].parent / "up", "--teacher", "resnet10t", "-o", e["root"] / "d"],
            EXIT_INPUT,
            r"timm teacher 'resnet10t'.*--random-teachers",
            ["d/last.pt"],
        ),
        (
            "convert-garbage",
            lambda e: ["convert", e["broken"], "--model", "r3d_18", "-o", e["root"] / "conv"],
            EXIT_INPUT,
            r"could not read checkpoint .*broken\.mp4",
            ["conv/model.safetensors"],
        ),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_bad_input_gives_one_clear_line_and_the_documented_exit_code(case, env, capsys):
    _, argv, code, pattern, absent = case
    try:
        rc = main([str(a) for a in argv(env)] + (COMMON if argv(env)[0] in ("extract", "evaluate", "finetune") else []))
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == code, err
    message = [line for line in err.splitlines() if line.startswith(("error:", "usage:", "r21d-zoo"))]
    assert message and __import__("re").search(pattern, err.replace("\n", " ")), err
    assert "Traceback" not in err
    assert "weights_only=False" not in err and "download it again" not in err or "garbage" in case[0]
    for rel in absent:
        assert not (env["root"] / rel).exists(), rel


def test_debug_shows_the_traceback(env, capsys):
    with pytest.raises(Exception, match="no rows"):
        main(["evaluate", "--data", str(env["files"]["empty"]), "--model", env["model"], "--debug"])


# --- evaluation in the model's label space ----------------------------------------------------------------------------


def evaluate_cli(env, data, out, *extra) -> dict:
    """``r21d-zoo evaluate`` of the always-``up`` model, one clip per video; the results it wrote."""
    args = ["evaluate", "--data", data, "--model", env["model"], "--output", out, "--num-clips", "1", *extra, *COMMON]
    assert main([str(a) for a in args]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("header", [True, False])
def test_always_up_model_scores_exactly_half_on_up_and_down(env, tmp_path, header, capsys):
    rows = [r for r in env["train"].read_text().splitlines()[1:] if r.endswith((",up", ",down"))]
    rows = [f"{env['train'].parent / r.split(',')[0]},{r.split(',')[1]}" for r in rows]
    assert sorted(r.split(",")[1] for r in rows) == ["down"] * 2 + ["up"] * 2
    data = tmp_path / "up_down.csv"
    data.write_text(("path,label\n" if header else "") + "\n".join(rows) + "\n")
    out = tmp_path / "eval.json"
    m = evaluate_cli(env, data, out)
    assert m["video_top1"] == 0.5 and m["classes"] == ["left", "up", "down"]
    assert m["confusion_matrix"] == [[0, 0, 0], [0, 2, 0], [0, 2, 0]] and m["absent_classes"] == ["left"]
    assert m["per_class"]["up"]["recall"] == 1.0 and m["per_class"]["down"]["recall"] == 0.0
    data.write_text("\n".join(rows + [f"{rows[0].split(',')[0]},sideways"]) + "\n")  # an unknown label, excluded
    m = evaluate_cli(env, data, out, "--exclude-unknown")
    assert m["video_top1"] == 0.5 and m["videos"] == 4 and m["excluded"] == {"sideways": 1}
    assert "1 row(s) excluded" in capsys.readouterr().err


def test_a_single_class_csv_and_integer_labels_map_onto_the_model(env, tmp_path):
    ups = [r for r in env["train"].read_text().splitlines()[1:] if r.endswith(",up")]
    data = tmp_path / "only_up.csv"
    data.write_text("".join(f"{env['train'].parent / r.split(',')[0]},1\n" for r in ups))  # index 1 of the model = up
    out = tmp_path / "eval.json"
    m = evaluate_cli(env, data, out)
    assert m["video_top1"] == 1.0 and m["per_class"]["up"]["support"] == 2 and m["absent_classes"] == ["left", "down"]


# --- training always leaves a model; unreadable validation videos are counted -----------------------------------------


def test_four_class_finetune_without_val_leaves_a_loadable_model(env, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "finetune",
            "--train",
            str(env["train"]),
            *TINY_FINETUNE,
            "-o",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    model = r21d_zoo.create_model(f"local-dir:{out / 'final'}")
    assert model.pretrained_cfg["label_names"] == ("down", "left", "right", "up")
    err = capsys.readouterr().err
    assert "read " in err and "8 videos, 4 of 4 classes present" in err  # what was read, before the work
    # per-epoch lines in the log, also without a TTY
    line = next(x for x in err.splitlines() if "r21d_zoo.train.loop: epoch 1/1:" in x)
    assert "train_loss" in line and "train_clip_top1" in line and "clips/s" in line and "ETA 0:00:00" in line


def test_unreadable_validation_video_is_logged_counted_and_can_stop_the_run(env, tmp_path, capsys):
    val = tmp_path / "val.csv"
    rows = env["train"].read_text().splitlines()[1:]
    val.write_text("".join(f"{env['train'].parent / r}\n" for r in rows) + f"{env['broken']},up\n")
    args = [
        "finetune",
        "--train",
        str(env["train"]),
        "--val",
        str(val),
        *TINY_FINETUNE,
        "--num-clips",
        "1",
    ]
    assert main([*args, "-o", str(tmp_path / "run")]) == 0
    assert "1 of 9 validation videos could not be read" in capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())[-1]
    assert record["val_failed"] == 1 and record["val_videos"] == 8
    assert main([*args, "-o", str(tmp_path / "stop"), "--stop-on-unreadable"]) == EXIT_INPUT
    assert "1 validation video(s) could not be read" in capsys.readouterr().err


# --- networking with limits ---------------------------------------------------------------------------------------


class Silent:
    """A loopback server that accepts connections and never answers (or, with ``count_only``, just counts them)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.connections, self.held, self.stop = 0, [], False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            self.held.append(conn)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/w-12345678.pth"

    def close(self):
        self.stop = True
        self.thread.join()
        for c in self.held:
            c.close()
        self.sock.close()


@pytest.fixture
def silent_server():
    server = Silent()
    yield server
    server.close()


def _fetch_stalled(server, torch_home):
    overlay = dict(url=server.url, hash_prefix="12345678", mirrors=())
    start = time.perf_counter()
    with pytest.raises(r21d_zoo.WeightsError, match=r"(?s)1 attempt\(s\) within (\d+) s in all.*timed out") as e:
        r21d_zoo.create_model("r3d_18.tv_kinetics400_16f", pretrained=True, pretrained_cfg_overlay=overlay, **TINY)
    return time.perf_counter() - start, str(e.value)


def test_a_stalled_server_fails_within_one_deadline_and_leaves_no_file(silent_server, torch_home, monkeypatch):
    """Retries share the deadline: a stall of the whole timeout leaves no time for another attempt."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("R21D_ZOO_TIMEOUT", "1")
    monkeypatch.setenv("R21D_ZOO_RETRIES", "3")  # before: 4 attempts of 1 s each, plus the pauses between them
    (torch_home / "checkpoints").mkdir(parents=True)
    stale = torch_home / "checkpoints" / ".download-999999999-dead.part"  # left by a run that was killed
    stale.write_bytes(b"partial")
    seconds, message = _fetch_stalled(silent_server, torch_home)
    assert seconds < 2.5 and "R21D_ZOO_TIMEOUT" in message
    assert silent_server.connections == 1
    assert list((torch_home / "checkpoints").iterdir()) == []  # no partial file, and the stale one is gone


def test_the_default_deadline_is_30_s(monkeypatch):
    """The deadline above is this one (the stall test runs it at 1 s rather than waiting 30)."""
    from r21d_zoo.models._download import download_timeout

    monkeypatch.delenv("R21D_ZOO_TIMEOUT", raising=False)
    assert download_timeout() == 30


def test_offline_mode_makes_no_connection_and_fails_at_once(silent_server, torch_home, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("R21D_ZOO_OFFLINE", "1")
    overlay = dict(url=silent_server.url, hash_prefix="12345678", mirrors=())
    start = time.perf_counter()
    with pytest.raises(r21d_zoo.WeightsError, match=r"(?s)offline mode.*checkpoint_path="):
        r21d_zoo.create_model("r3d_18.tv_kinetics400_16f", pretrained=True, pretrained_cfg_overlay=overlay, **TINY)
    assert time.perf_counter() - start < 1 and silent_server.connections == 0


def test_a_refused_checkpoint_names_what_it_asked_for(env):
    with pytest.raises(r21d_zoo.WeightsError) as e:
        r21d_zoo.create_model("r2plus1d_18", checkpoint_path=str(env["evil"]))
    text = str(e.value)
    assert "os.system" in text and "nothing in it was executed" in text and "safetensors" in text
    assert "weights_only=False" not in text and "download it again" not in text
