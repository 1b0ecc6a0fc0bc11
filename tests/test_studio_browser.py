"""The studio end to end in a real browser (Debian's chromium driven by Playwright).

Starts ``sortsight studio`` (the real CLI, uvicorn on 127.0.0.1 and a free port) in a
subprocess, then: create a project, upload a zip, train one quick epoch (the real training
CLI on tiny images), see the leaderboard, relabel a wrongly labelled image from the mistakes
gallery, predict an uploaded image, export a Space folder. Screenshots go to
``test-artifacts/studio/``.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_image, write_class_folder

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "studio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def studio_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sortsight", "studio", "--port", str(port), "--home", str(tmp_path / "home")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"open (http://127\.0\.0\.1:\d+/)", first)
        assert match, f"studio printed no address: {first!r}"
        url = match.group(1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until uvicorn accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def data_zip(tmp_path: Path) -> tuple[Path, str]:
    """A two-class zip where one validation image of 'cats' really shows a dog (a known mistake)."""
    from sortsight.data import load_dataset

    folder = write_class_folder(tmp_path / "photos", ("cats", "dogs"), per_class=10, size=40)
    ds = load_dataset(folder)  # the split training will use (seed 42, deterministic)
    wrong = next(it.path for it in ds.items if it.split == "validation" and it.label == "cats")
    make_image(1, size=40, seed=99).save(wrong)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*.png")):
            z.write(path, path.relative_to(tmp_path).as_posix())
    return archive, wrong.name


def test_studio_in_a_real_browser(studio_url: str, tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: run the project's install script (bash scripts/install.sh; "
            ".ci/run does it), which installs Debian's chromium."
        )
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    archive, wrong_name = data_zip(tmp_path)
    new_image = tmp_path / "new.png"
    make_image(1, size=40, seed=7).save(new_image)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        page.set_default_timeout(20_000)
        page.goto(studio_url)
        expect(page.get_by_text("No projects yet")).to_be_visible()

        # 1. projects: create one
        page.fill("input[name=name]", "Postcards")
        page.click("text=Create project")
        expect(page.locator("h1")).to_have_text("Data")

        # 2. data: upload a zip of class folders
        page.set_input_files("input[name=archive]", str(archive))
        page.click("text=Upload zip")
        expect(page.locator(".flash.ok")).to_contain_text("Added 20 image(s)")
        expect(page.locator("#counts tfoot")).to_contain_text("20")
        expect(page.locator(".sample-row img")).to_have_count(16)
        page.wait_for_function("Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(SHOTS / "1-data.png"), full_page=True)

        # 3. train: one quick epoch on tiny inputs, follow it live
        page.click("text=2 · Train")
        page.fill("input[name=epochs]", "1")
        page.click("text=Advanced (AutoTrain parameter names)")
        page.fill("input[name=image_size]", "64")
        page.fill("input[name=batch_size]", "8")
        page.screenshot(path=str(SHOTS / "2a-train-form.png"), full_page=True)
        page.click("#start-training")
        expect(page.locator("#job-status")).to_have_text("running")
        page.reload()  # a reload shows the job's true state
        expect(page.locator("#job-status")).to_have_text(re.compile("running|finished"))
        expect(page.locator("#job-status")).to_have_text("finished", timeout=400_000)
        expect(page.locator("#leaderboard tbody tr")).to_have_count(1)
        expect(page.locator("#leaderboard")).to_contain_text("efficientnet_lite0")
        expect(page.locator("#charts svg").first).to_be_visible()
        expect(page.locator("#job-estimate")).to_contain_text("estimated about")
        page.screenshot(path=str(SHOTS / "2-train.png"), full_page=True)
        page.locator("#leaderboard thead th", has_text="val_accuracy").click()  # sortable

        # 4. results: the planted mistake is in the gallery; relabel it on disk
        page.click("text=See results")
        expect(page.locator("#metrics")).to_contain_text("accuracy")
        card = page.locator("figure.mistake", has_text=wrong_name)
        expect(card).to_be_visible()
        page.wait_for_function("Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(SHOTS / "3-results.png"), full_page=True)
        card.locator("select[name=label]").select_option("dogs")
        card.locator("button.relabel").click()
        expect(page.locator(".flash.ok")).to_contain_text(f"Moved {wrong_name} to 'dogs'")
        home = Path(str(tmp_path / "home"))
        assert (home / "projects/postcards/data/dogs" / wrong_name).is_file()
        assert not (home / "projects/postcards/data/cats" / wrong_name).exists()
        expect(page.locator("#undo")).to_be_visible()
        page.screenshot(path=str(SHOTS / "3b-relabelled.png"), full_page=True)

        # 5. use: predict an uploaded image, see the table, export a Space folder
        page.click("text=4 · Use")
        upload_form = page.locator("form", has_text="Upload images")
        upload_form.locator("input[type=file]").set_input_files(str(new_image))
        upload_form.locator("button", has_text="Predict").click()
        expect(page.locator("#job-status")).to_have_text("finished", timeout=200_000)
        page.click("text=See predictions")
        row = page.locator("#predictions tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("new.png")
        expect(row).to_contain_text("dogs")
        page.screenshot(path=str(SHOTS / "4-use.png"), full_page=True)
        with page.expect_download() as download:
            page.click("text=Export a Space folder")
        names = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())).namelist()
        assert "postcards-space/app.py" in names and "postcards-space/README.md" in names
        browser.close()
