"""The page of `tformer serve`, end to end in headless Chromium (Debian's chromium + chromedriver, driven by
Selenium; nothing downloads a browser). `./dev test` installs the two packages when they are missing; where
they are still missing this test fails and says how to install them.

A screenshot of the page lands in test-artifacts/serve-page.png.
"""

import contextlib
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SENTENCE = "three hundred twenty-one"
INSTALL = "run ./dev setup as root, or: sudo apt-get install chromium chromium-driver"
FILLS = "return [...document.querySelectorAll('#map rect.cell')].map(r => r.getAttribute('fill'))"  # row by row


@contextlib.contextmanager
def serve_process(run_dir, log):
    """`tformer serve RUN --port 0` in a subprocess; yields its URL and stops it afterwards."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tformer.cli.main", "serve", str(run_dir), "--port", "0",
                                 "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline, url = time.monotonic() + 90, None
        while url is None:
            assert proc.poll() is None, f"tformer serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"tformer serve did not start: {log.read_text()}"
            for line in log.read_text().splitlines():
                if line.startswith("tformer: serving ") and " at http://127.0.0.1:" in line:
                    url = line.split(" at ")[1].split()[0].rstrip("/")
            time.sleep(0.1)
        while True:  # listening: wait until the app answers
            try:
                urllib.request.urlopen(url + "/health", timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"tformer serve does not answer: {log.read_text()}"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def served(trained_run, tmp_path_factory):
    with serve_process(trained_run, tmp_path_factory.mktemp("serve") / "stderr.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail(f"the browser test needs Debian's chromium and chromedriver: {INSTALL}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser test needs selenium: pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                 "--window-size=1280,1100", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)  # --no-sandbox: CI runs as root; the rest: no calls to the outside
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 60, *, error_ok: bool = False):
    """The first truthy value of ``script`` (JavaScript, with ``return``), polled; fails on a page error."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        state = driver.execute_script("return document.body.dataset.state + ': ' + $('error').textContent")
        assert time.monotonic() < deadline, f"timed out waiting for {script!r}; page {state}"
        assert error_ok or not state.startswith("error"), f"the page shows an error: {state}"
        time.sleep(0.05)


def api(url: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_the_page_translates_and_draws_the_attention_map(served, browser, corpus):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    browser.get(served + "/")
    # the page opens with the run's first validation sentence already translated
    wait_for(browser, "return document.body.dataset.state === 'rendered'")
    assert "parameters" in browser.find_element(By.ID, "model").text
    source = browser.find_element(By.ID, "source")
    example = (corpus / "valid.en").read_text().splitlines()[0]
    assert source.get_attribute("value") == example
    first = api(served, "/translate", {"texts": [example], "beam_size": 4})["translations"][0]
    assert browser.find_element(By.ID, "translation").text == first
    source.clear()
    source.send_keys(SENTENCE)
    source.send_keys(Keys.ENTER)
    wait_for(browser, "return document.body.dataset.state === 'rendered'")

    # the translation is the API's
    want = api(served, "/translate", {"texts": [SENTENCE], "beam_size": 4})["translations"][0]
    assert browser.find_element(By.ID, "translation").text == want
    att = api(served, "/attention", {"text": SENTENCE, "beam_size": 4})
    S, T = len(att["source_tokens"]), len(att["target_output_tokens"])

    # the map: cross-attention by default, one cell per (target token, source token), not all one colour
    svg = browser.find_element(By.ID, "map")
    assert int(svg.get_attribute("data-cells")) == T * S
    fills = browser.execute_script(FILLS)
    assert len(fills) == T * S and len(set(fills)) > 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map .row-label")) == T
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map .col-label")) == S
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, '#keys .tok')] == att["source_tokens"]

    # hovering a source token highlights it, its column, and the target tokens that read it
    token = browser.find_elements(By.CSS_SELECTOR, '#keys .tok')[1]
    ActionChains(browser).move_to_element(token).perform()
    wait_for(browser, "return document.querySelectorAll('.tok.active').length === 1")
    assert "active" in token.get_attribute("class")
    assert float(browser.find_element(By.ID, "focus").get_attribute("height")) > 0
    assert browser.find_elements(By.CSS_SELECTOR, "#queries .tok.aligned")
    assert "is read most by" in browser.find_element(By.ID, "readout").text
    # hovering a cell names the pair and its weight
    cell = browser.find_element(By.CSS_SELECTOR, '#map rect.cell[data-r="1"][data-c="0"]')
    ActionChains(browser).move_to_element(cell).perform()
    wait_for(browser, "return $('readout').textContent.includes('→')")
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "serve-page.png"))

    # another kind, layer and head redraw the map with its own axes
    Select(browser.find_element(By.ID, "kind")).select_by_value("encoder")
    Select(browser.find_element(By.ID, "layer")).select_by_index(0)
    Select(browser.find_element(By.ID, "head")).select_by_value("0")
    assert int(svg.get_attribute("data-cells")) == S * S
    weights = [w for row in att["encoder"][0][0] for w in row]  # layer 1, head 1, row by row
    drawn = browser.execute_script(FILLS)
    assert drawn[weights.index(max(weights))] == "rgb(8,48,107)"  # the largest weight gets the darkest blue
    assert drawn[weights.index(min(weights))] != "rgb(8,48,107)"
    Select(browser.find_element(By.ID, "kind")).select_by_value("decoder_self")
    assert int(svg.get_attribute("data-cells")) == T * T

    # a bad request shows the server's message on the page
    browser.execute_script("$('source').value = 'x'.repeat(1001)")  # past the textarea's maxlength
    browser.find_element(By.ID, "go").click()
    message = wait_for(browser, "return document.body.dataset.state === 'error' && $('error').textContent",
                       error_ok=True)
    assert "at most 1000 characters" in message


# ---- the page of the other kinds of run: it adapts to the task and opens with the run's example answered ------

@pytest.mark.parametrize("kind", ["classify", "vision", "lm", "asr", "qa", "summarization"])
def test_the_page_adapts_to_the_task_and_opens_answered(kind, browser, request):
    from selenium.webdriver.common.by import By
    from serve_helpers import served_app

    from tformer.cli.serve import served as what_to_serve
    from tformer.serving.app import create_app

    run_dir = request.getfixturevalue(f"{kind}_run")
    if isinstance(run_dir, tuple):  # (the run or its data folder, the run's summary)
        run_dir = run_dir[0] if kind == "qa" else run_dir[0] / "run"
    model, example = what_to_serve(str(run_dir), "cpu")  # as `tformer serve` builds it, in a thread here
    with served_app(create_app(model, name=run_dir.name, example=example)) as url:
        browser.get(url + "/")
        wait_for(browser, "return document.body.dataset.state === 'rendered'")
        info = json.loads(urllib.request.urlopen(url + "/info", timeout=30).read())
        answer = browser.find_element(By.ID, "answer").text
        if kind == "lm":
            want = api(url, "/generate", {"prompts": [info["example"]], "max_new_tokens": 16})["outputs"][0]
            assert answer == (want["prompt"] + want["continuation"]).strip()
            return
        example = info["example"]
        body = {"inputs": [example], **({"beam_size": 4} if kind == "summarization" else {})}
        want = api(url, "/predict", body)["outputs"][0]
        if kind == "summarization":
            assert answer == want["summary"].strip()
            return
        if kind == "qa":  # the answer, and the passage with the answer's characters marked
            assert answer == (want["answer"] or "(no answer)")
            if want["end"] > want["start"]:
                assert browser.find_element(By.CSS_SELECTOR, "#passage mark").text == want["answer"]
            return
        if kind == "asr":  # the example utterance, its length named, transcribed
            assert answer == want["transcript"] and " s at 8000 Hz" in browser.find_element(By.ID, "audio-about").text
            return
        assert answer == want["label"]
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert len(bars) == len(info["labels"]) and "top" in bars[0].get_attribute("class")
        if kind == "vision":  # the example image is drawn on the 8 x 8 grid, darker where the ink is
            cells = browser.find_elements(By.CSS_SELECTOR, "#grid div")
            flat = [v for row in example["pixels"] for v in row]
            assert len(cells) == 64
            assert cells[flat.index(max(flat))].value_of_css_property("background-color") == "rgba(0, 0, 0, 1)"
            return
        # a text classifier: one token chip per token, shaded by the [CLS] token's attention
        att = api(url, "/attention", {"text": example})
        chips = browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")
        assert [c.text for c in chips] == [t for t in att["tokens"]]
        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / f"serve-page-{kind}.png"))
