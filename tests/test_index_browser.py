"""The studio's Label page in a real browser (Debian's chromium driven by Playwright).

The studio runs in a thread of this process (uvicorn) over a pile indexed here at 64 px, with
the fake CLI standing in for training. The test labels 30 images with the keyboard only (the
image shown is labelled by its folder name, as a person would see it), watches the model's
guesses improve, confirms "most likely" suggestions with ``y``, exports the labels and starts
training. Screenshots go to ``test-artifacts/label/``.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_class_folder

from sortsight.index import build_index

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "label"
FAKE_CLI = (sys.executable, str(Path(__file__).parent / "studio_fake_cli.py"))
CLASSES = ("red", "green", "blue")


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[str]:
    import socket

    import uvicorn

    from sortsight.studio import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(tmp_path / "home", cli=FAKE_CLI, folders=[tmp_path]),  # the pile is made in tmp_path
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_label_30_images_by_keyboard_then_export_and_train(studio: str, tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run bash scripts/install.sh (it installs Debian's chromium).")
    from playwright.sync_api import expect, sync_playwright

    pile = write_class_folder(tmp_path / "pile", CLASSES, per_class=20, size=40)
    index_dir = tmp_path / "pile.index"
    build_index(pile, index_dir, image_size=64, engine="eager", num_workers=0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(30_000)
        page.goto(studio)
        page.fill("input[name=name]", "Pile")
        page.click("text=Create project")
        page.goto(f"{studio}/projects/1/label")
        page.fill("input[name=source]", str(index_dir))
        page.click("form button[type=submit]")
        expect(page.locator("#current-path")).not_to_be_empty()

        for name in CLASSES:  # name the classes: keys 1, 2, 3
            page.fill("#new-class", name)
            page.press("#new-class", "Enter")
            expect(page.locator("#classes button")).to_have_count(CLASSES.index(name) + 1)
        page.screenshot(path=str(SHOTS / "1-classes.png"), full_page=True)

        right: list[bool] = []
        for i in range(30):
            shown = page.locator("#current-path").inner_text()
            guess = page.locator("#current-guess").get_attribute("data-guess") or ""
            truth = shown.split("/")[0]
            if guess:
                right.append(guess == truth)
            page.keyboard.press(str(CLASSES.index(truth) + 1))
            expect(page.locator("#stats")).to_contain_text(f"{i + 1} of 60 labelled")
            expect(page.locator("#current-path")).not_to_have_text(shown)
        page.screenshot(path=str(SHOTS / "2-after-30.png"), full_page=True)
        assert len(right) >= 20  # guesses start after two classes have labels
        assert sum(right[-10:]) > sum(right[:10]) or sum(right[:10]) == 10, right
        assert sum(right[-10:]) >= 8, right
        hits = int(page.locator("#stats").get_attribute("data-hits") or 0)
        assert hits >= 8

        page.select_option("#mode", "blue")  # "most likely blue": confirm in bulk with y
        expect(page.locator("#current-guess")).to_contain_text("blue")
        for i in range(3):
            assert page.locator("#current-path").inner_text().startswith("blue/")
            page.keyboard.press("y")
            expect(page.locator("#stats")).to_contain_text(f"{31 + i} of 60 labelled")
        page.screenshot(path=str(SHOTS / "3-most-likely.png"), full_page=True)

        with page.expect_download() as download:
            page.click("#export")
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert len(rows) == 33 and all(Path(r["image"]).parent.name == r["label"] for r in rows)

        page.click("#train")
        expect(page.locator("#job-status")).to_have_text("finished", timeout=60_000)
        data = tmp_path / "home" / "projects" / "pile" / "data"
        assert sum(1 for _ in data.rglob("*.png")) == 33
        page.screenshot(path=str(SHOTS / "4-train.png"), full_page=True)
        browser.close()
