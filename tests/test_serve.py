"""``r21d-zoo serve``: the Gradio page, driven in a real headless browser (Debian's Chromium and its driver).

The browser test needs the ``serve`` extra (in dev), Selenium and ``/usr/bin/chromium`` with ``/usr/bin/chromedriver``;
without them it skips, saying what is missing. CI installs them and sets R21D_ZOO_REQUIRE_BROWSER=1, so there it fails
instead of skipping. It writes a screenshot of the answered page to ``$R21D_ZOO_ARTIFACTS`` (default:
``test-artifacts/`` in the checkout).
"""

import contextlib
import os
import shutil
import socket
import sys
import urllib.error
from pathlib import Path

import pytest

import r21d_zoo
import r21d_zoo.models._loading as loading
from r21d_zoo.cli import main as cli_main
from r21d_zoo.deploy import save_pretrained
from r21d_zoo.infer.config import ModelSource, create_or_fall_back
from r21d_zoo.jobs.demo import synthesize_clip
from r21d_zoo.infer.config import PredictConfig
from r21d_zoo.infer.timeline import predict
from r21d_zoo.jobs.serve import RANDOM_NOTE, Server, offline_theme
from r21d_zoo.models import set_derived_cfg
from util import TINY

pytestmark = pytest.mark.video
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("R21D_ZOO_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
SETTINGS = dict(clip=dict(num_frames=8, resize_size=(32, 32), crop_size=28))


def _needs(what: str) -> None:
    if os.environ.get("R21D_ZOO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser test is required here (R21D_ZOO_REQUIRE_BROWSER=1) but {what}")
    pytest.skip(what)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _markdown(page) -> str:
    return "\n".join(str(b.value) for b in page.blocks.values() if type(b).__name__ == "Markdown" and b.value)


@pytest.fixture
def launched(monkeypatch):
    """``serve`` run to the point of launching: the page it would serve, without serving it."""
    gr = pytest.importorskip("gradio")
    pages = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: pages.append((self, kwargs)))
    return pages


def test_the_page_says_plainly_when_the_weights_are_random(launched, monkeypatch, capsys, torch_home, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(loading, "download_url", offline)
    video = synthesize_clip(str(tmp_path / "pick.mp4"), num_frames=20, size=(48, 64))
    assert cli_main(["serve", str(tmp_path), "--model", "r2plus1d_18.kinetics400_8f", "--port", "7999"]) == 0
    out = capsys.readouterr().out
    assert "FALLING BACK TO RANDOM WEIGHTS" in out and RANDOM_NOTE in out
    (page, kwargs), = launched
    assert RANDOM_NOTE in _markdown(page) and kwargs["server_port"] == 7999 and kwargs["share"] is False
    assert str(tmp_path.resolve()) in kwargs["allowed_paths"]  # the example can be served
    assert any(type(b).__name__ == "Dataset" for b in page.blocks.values())  # the examples to pick from
    launched.clear()
    model = r21d_zoo.create_model("r2plus1d_18", label_names=["left", "right"], **TINY)
    server = Server(model, "tiny", trained=True, settings=PredictConfig(**SETTINGS))
    assert RANDOM_NOTE not in _markdown(server.build())
    top, timeline, gif, files, summary = Server(model, "tiny", False, PredictConfig(**SETTINGS)).answer(video)
    assert RANDOM_NOTE in summary and set(top) == {"left", "right"} and gif is None
    assert Path(timeline).suffix == ".png"
    assert sorted(Path(f).suffix for f in files) == [".csv", ".json", ".srt", ".vtt"]


def test_a_port_in_use_is_an_error_that_names_the_option(capsys):
    pytest.importorskip("gradio")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli_main(["serve", "--random-weights", "--model", "r2plus1d_18", "--model-args",
                         '{"channel_multiplier": 0.125}', "--port", str(port)]) == 3
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err and "--port" in err


def test_a_named_example_that_does_not_exist_is_an_error(launched, tmp_path, capsys):
    missing = tmp_path / "nope.mp4"
    assert cli_main(["serve", str(missing), "--random-weights", "--model", "r2plus1d_18"]) == 3
    assert f"example video {missing} does not exist" in capsys.readouterr().err and not launched


def test_serve_without_gradio_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    assert cli_main(["serve", "--random-weights", "--model", "r2plus1d_18"]) == 3
    assert "pip install 'r21d-zoo[serve]'" in capsys.readouterr().err


def _chromium(tmp_path: Path, *flags: str):
    """Debian's headless Chromium under Selenium, with ``flags`` added (skips, or fails where it is required, when the
    browser, its driver, Gradio or Selenium is missing)."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        _needs(f"{CHROMIUM} and {CHROMEDRIVER} are not installed (Debian: apt install chromium chromium-driver)")
    try:
        import gradio  # noqa: F401
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        _needs(f"the serve extra or Selenium is not installed ({e})")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--window-size=1280,1500", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", f"--user-data-dir={tmp_path / 'chromium'}", *flags):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@contextlib.contextmanager
def _in_chromium(page, tmp_path: Path, *flags: str, allowed_paths=()):
    """``page`` served on 127.0.0.1 and opened in :func:`_chromium` (with ``flags``): the driver, on the page."""
    try:
        driver = _chromium(tmp_path, *flags)
    except BaseException:
        page.close()
        raise
    try:
        page.queue().launch(server_name="127.0.0.1", server_port=_free_port(), share=False, prevent_thread_lock=True,
                            theme=offline_theme(), allowed_paths=list(allowed_paths))
        driver.get(page.local_url)
        yield driver
    finally:
        driver.quit()
        page.close()


@pytest.mark.browser
def test_a_person_uploads_a_video_in_a_real_browser_and_sees_the_answer(tmp_path):
    labelled = r21d_zoo.create_model("r2plus1d_18", num_classes=2, **TINY)
    set_derived_cfg(labelled, labels=("left", "right"), notes="a test model of left/right motion")
    save_pretrained(labelled, tmp_path / "model")  # read back the way a user's fine-tuned model is
    source = ModelSource(f"local-dir:{tmp_path / 'model'}")
    model, trained = create_or_fall_back(source, "serve")
    video = synthesize_clip(str(tmp_path / "upload.mp4"), num_frames=40, size=(96, 128))
    example = synthesize_clip(str(tmp_path / "example.mp4"), num_frames=20, size=(48, 64))
    server = Server(model, source.name, trained, PredictConfig(**SETTINGS), layer="layer3", examples=[example])
    expected = predict(model, video, PredictConfig(**SETTINGS))
    with _in_chromium(server.build(), tmp_path, allowed_paths=[str(tmp_path)]) as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(driver, 60)
        upload = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#video input[type=file]"))[0]
        weights = driver.find_element(By.ID, "weights").text
        assert "RANDOM" not in weights and "a test model of left/right motion" in weights  # its own provenance
        assert "example.mp4" in driver.page_source  # the video to pick
        upload.send_keys(video)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#video video"))  # the upload is shown
        driver.find_element(By.CSS_SELECTOR, "#explain input").click()
        driver.find_element(By.ID, "predict").click()

        def rendered(d, elem_id):
            return d.execute_script(f"const i = document.querySelector('#{elem_id} img'); "
                                    "return i && i.complete ? i.naturalWidth : 0")

        wait.until(lambda d: rendered(d, "timeline") and rendered(d, "gradcam")
                   or d.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']"))
        toasts = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']")]
        assert not toasts, toasts
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "serve.png"))
        shown = driver.find_element(By.ID, "top5").text.splitlines()
        best = expected.predictions[0]["label"]
        assert shown[1] == best and {"left", "right"} <= set(shown)  # the heading is the video's top class
        assert f"{round(expected.predictions[0]['score'] * 100)}%" in shown
        assert rendered(driver, "timeline") == 1000  # plot_timeline's 10 inches at 100 dpi
        assert f"{len(expected.timeline)} windows" in driver.find_element(By.ID, "summary").text
        listed = driver.find_element(By.ID, "files").text.replace("\n", "")  # name and suffix are two lines
        assert all(f"upload.{kind}" in listed for kind in ("json", "csv", "srt", "vtt"))
        # picking the offered video instead answers for it
        driver.find_element(By.CSS_SELECTOR, ".gallery-item").click()
        driver.find_element(By.ID, "predict").click()
        wait.until(lambda d: "example.mp4" in d.find_element(By.ID, "summary").text)
        picked = predict(model, example, PredictConfig(**SETTINGS))
        assert f"{len(picked.timeline)} windows" in driver.find_element(By.ID, "summary").text


def test_a_bad_upload_is_one_line_on_the_console_not_a_traceback(tmp_path, caplog):
    gr = pytest.importorskip("gradio")
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=3, **TINY)
    page = Server(model, "tiny", trained=True, settings=PredictConfig(**SETTINGS)).build()
    handler = next(f.fn for f in page.fns.values() if f.api_name == "predict")
    (tmp_path / "bad.mp4").write_text("not a video\n")
    with pytest.raises(gr.Error) as refused, caplog.at_level("WARNING"):
        handler(str(tmp_path / "bad.mp4"), False)
    assert refused.value.print_exception is False  # gradio prints no traceback for it
    assert "bad.mp4" in str(refused.value) and "a visitor's upload was refused: " in caplog.text


def fake_camera_file(path: Path, seconds: float = 4.0) -> Path:
    """A y4m file for Chromium's fake camera: the motion task's square moving left, 10 fps, 64 px."""
    import av
    import numpy as np

    from r21d_zoo.data.synthetic import motion_clip

    frames = np.concatenate([motion_clip("left", 8, 64, np.random.default_rng(i)) for i in range(int(seconds / 0.8))])
    with av.open(str(path), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.browser
def test_the_live_tab_classifies_a_webcam_as_it_streams(tmp_path):
    """Chromium's fake camera plays a file; the live tab shows the current labels, a rolling timeline and the
    latency."""
    model = r21d_zoo.create_model("r2plus1d_18", num_classes=2, **TINY)
    set_derived_cfg(model, labels=("left", "right"))
    page = Server(model, "tiny", trained=True, settings=PredictConfig(**SETTINGS)).build()
    camera = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-video-capture={fake_camera_file(tmp_path / 'camera.y4m')}")  # fmt: skip
    with _in_chromium(page, tmp_path, *camera) as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(driver, 60)

        def click(xpath):
            wait.until(lambda d: [e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()])[0].click()

        click("//button[contains(., 'Live (webcam)')]")
        click("//*[@id='camera']//button[contains(., 'Access Webcam')]")
        click("//*[@id='camera']//button[@aria-label='capture photo' or contains(., 'Record')]")
        wait.until(lambda d: "after its last frame" in d.find_element(By.ID, "live_latency").text)
        shown = driver.find_element(By.ID, "live_top").text.splitlines()
        assert shown[0] == "Now (the latest window)" and shown[1] in ("left", "right"), shown  # the top class
        assert {"left", "right"} <= set(shown), shown
        timeline = driver.find_element(By.ID, "live_timeline").text
        assert "left" in timeline or "right" in timeline, timeline
        latency = driver.find_element(By.ID, "live_latency").text
        assert "answered" in latency and "skipped" in latency, latency
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "serve-live.png"))
