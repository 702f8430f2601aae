"""The README's pictures of `tformer serve`'s page: serve a run, open the page in headless Chromium, save a PNG.

    python docs/serve_screenshot.py runs/demo docs/pictures/serve-page.png
    python docs/serve_screenshot.py runs/langid docs/pictures/serve-page-classify.png --hover 2

The run is served as `tformer serve RUN` serves it (tformer.cli.serve.served + create_app), on a free loopback
port in a thread of this process; the page opens with the run's first validation input already answered, and the
picture is taken once it has drawn everything (``body[data-state=rendered]``). ``--hover N`` moves the mouse onto
the N-th source token first (the translation page then shows what attends to it). Needs Debian's chromium and
chromedriver, and selenium (the dev extra), as the browser test does.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("out", help="the PNG to write")
    p.add_argument("--hover", type=int, default=None, help="hover this source token (translation page)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=1000)
    args = p.parse_args()

    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from tformer.cli.serve import listen, served
    from tformer.serving.app import create_app

    model, example = served(args.run_dir, "cpu")
    app = create_app(model, name=Path(args.run_dir).resolve().name, example=example)
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    with tempfile.TemporaryDirectory() as profile:
        for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", f"--window-size={args.width},{args.height}",
                     f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "chromedriver"))
        try:
            driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
            deadline = time.monotonic() + 120
            state = "return document.body.dataset.state"
            while driver.execute_script(state) != "rendered":
                if time.monotonic() > deadline or driver.execute_script(state) == "error":
                    print(f"the page did not draw: {driver.find_element(By.ID, 'error').text}", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            if args.hover is not None:
                token = driver.find_elements(By.CSS_SELECTOR, "#keys .tok")[args.hover]
                ActionChains(driver).move_to_element(token).perform()
                time.sleep(0.3)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(args.out)
        finally:
            driver.quit()
            server.should_exit = True
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
