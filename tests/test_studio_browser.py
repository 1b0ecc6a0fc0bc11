"""The studio walked as a non-programmer would, in a real browser (Debian's chromium via Playwright).

create a project → upload a zip → train with the defaults → see the model ready while training
still improves it → review the mistakes (relabel one, undo offered) → sort a folder → download
the model, asserting the words on the screen at each step and saving a screenshot per step in
pytest's temporary folder (``.../shots/``) so a failure can be looked at.

The studio runs in its own process (uvicorn on 127.0.0.1 and a free port) with the quick
stand-in CLI (tests/studio_fake_cli.py), which writes the run folder and ``events.jsonl`` as
training does and holds training after the first model until the test opens a gate file.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_class_folder

pytestmark = [pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
FAKE_CLI = (sys.executable, str(Path(__file__).parent / "studio_fake_cli.py"))
#: words that belong to programmers, not on a no-code page
PROGRAMMER_TEXT = (
    "model=",
    "count=",
    "$ ",
    "python",
    "sortsight train",
    "sortsight evaluate",
    "n_images",
    "None",
)

_SERVE = """
import sys, uvicorn
from sortsight.studio import create_app
home, port, inbox, *cli = sys.argv[1:]
uvicorn.run(create_app(home, cli=tuple(cli), folders=[inbox]), host="127.0.0.1", port=int(port),
            log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A running studio: its address, the gate file that lets training finish, a folder to sort."""
    port = free_port()
    inbox = tmp_path / "inbox"
    write_class_folder(inbox, ("cats", "dogs"), per_class=2, size=40)
    gate = tmp_path / "gate"
    env = {**os.environ, "FAKE_CLI_GATE": str(gate)}
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(home), str(port), str(inbox), *FAKE_CLI],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until uvicorn accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield {"url": f"http://127.0.0.1:{port}", "gate": gate, "inbox": inbox, "home": home}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def data_zip(tmp_path: Path) -> Path:
    folder = write_class_folder(tmp_path / "photos", ("cats", "dogs"), per_class=10, size=40)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*.png")):
            z.write(path, path.relative_to(tmp_path).as_posix())
    return archive


def test_a_newcomer_walks_the_studio(walk: dict[str, Any], tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: run the project's install script (bash scripts/install.sh; "
            ".ci/run does it), which installs Debian's chromium."
        )
    from playwright.sync_api import Page, expect, sync_playwright

    shots = tmp_path / "shots"
    shots.mkdir()
    archive = data_zip(tmp_path)

    def step(page: Page, name: str) -> None:
        """Screenshot, and no programmer text among the words the user reads."""
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        shown = page.locator("main").inner_text()
        for text in PROGRAMMER_TEXT:
            assert text not in shown, f"{name}: {text!r} on the page (screenshot in {shots})"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        page.set_default_timeout(20_000)
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
        page.goto(walk["url"])
        expect(page.get_by_text("No projects yet")).to_be_visible()

        # 1. create a project: the Data page greets with what to do, not with an error
        page.fill("input[name=name]", "Postcards")
        page.click("text=Create project")
        expect(page.locator("h1")).to_have_text("Data")
        expect(page.locator(".flash.ok")).to_have_text("Project 'Postcards' created. Now add images.")
        expect(page.locator("main")).to_contain_text("This project has no images yet. Upload a zip")
        step(page, "1-new-project")

        # 2. upload a zip of class folders
        page.set_input_files("input[name=archive]", str(archive))
        page.click("text=Upload zip")
        expect(page.locator(".flash.ok")).to_have_text("Added 20 image(s) from photos.zip.")
        expect(page.locator("#counts tfoot")).to_contain_text("20")
        expect(page.locator(".sample-row img")).to_have_count(16)
        page.wait_for_function("Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)")
        step(page, "2-data")

        # 3. train with the defaults: an estimate first, then the model is ready while it improves
        page.click("text=2 · Train")
        page.click("#estimate-training")
        expect(page.locator("#estimate-result")).to_have_text(
            "Training these 20 images should take about 3 s, plus up to 6 s if fine-tuning improves on it."
        )
        page.click("text=Advanced settings")  # the learning-rate finder, its plot, "Use" fills lr
        page.click("#lr-find")
        expect(page.locator("#lr-find-result")).to_have_text(
            "Suggested learning rate: 2.0e-3 (where the loss falls steadily)."
        )
        page.wait_for_function("document.getElementById('lr-find-plot').naturalWidth > 0")
        page.click("#lr-find-use")
        expect(page.locator("input[name=lr]")).to_have_value("2.0e-3")
        step(page, "3-lr-find")
        page.fill("input[name=lr]", "")  # train with the defaults
        page.click("#start-training")
        expect(page.locator("#job-headline")).to_have_text(
            "Model ready (first model, validation accuracy 80.0%): you can use it now. "
            "Training goes on to improve it."
        )
        expect(page.locator("#job-status")).to_have_text("running")
        expect(page.locator("#job-settings")).to_have_text("default model")
        expect(page.get_by_text("Use the model now →")).to_be_visible()
        expect(page.locator("#job-estimate")).to_contain_text("estimated before the start: about 3 s")
        expect(page.locator("#charts h3").first).to_have_text("Validation accuracy")
        step(page, "3-model-ready")
        walk["gate"].write_text("go")  # let fine-tuning finish
        expect(page.locator("#job-status")).to_have_text("finished")
        expect(page.locator("#job-headline")).to_have_text(
            "Finished. Kept the first model: validation accuracy 80.0%."
        )
        expect(page.locator("#leaderboard thead")).to_contain_text("Validation accuracy")
        expect(page.locator("#leaderboard tbody")).to_contain_text("80.0%")
        expect(page.locator("#leaderboard tbody")).to_contain_text("first model")
        box = page.locator("#leaderboard").bounding_box()
        holder = page.locator("#leaderboard").locator("xpath=..").bounding_box()
        assert box and holder and box["width"] <= holder["width"] + 1  # no clipped column
        texts = page.locator("#charts svg").first.locator("text").all_text_contents()
        axis = [float(t) for t in texts if t.replace(".", "", 1).isdigit()]
        assert len(axis) == 2 and all(0.0 <= y <= 1.0 for y in axis), texts  # accuracy stays in 0–1
        step(page, "4-trained")

        # 4. review the mistakes: a plain sentence, relabel one, undo is offered only now
        page.click("text=See results →")
        expect(page.locator("#verdict")).to_have_text(
            "8 of 10 validation images right (80.0%); most confused: cats → dogs (2 images)."
        )
        expect(page.locator("#metrics")).to_contain_text("Accuracy")
        expect(page.locator("#undo")).to_have_count(0)
        card = page.locator("figure.mistake").first
        name = card.locator("figcaption .small").first.inner_text()
        card.locator("select[name=label]").select_option("dogs")
        card.locator("button.relabel").click()
        expect(page.locator(".flash.ok")).to_contain_text(f"Moved {name} to 'dogs'")
        expect(page.locator("#undo")).to_be_visible()
        expect(page.locator("#fix-history")).to_contain_text(f"relabelled {name} → dogs")
        assert (walk["home"] / "projects/postcards/data/dogs" / name).is_file()
        step(page, "5-results")

        # 5. sort a folder of this computer (one the studio was allowed to read)
        page.click("text=4 · Use")
        form = page.locator("#folder-form")
        expect(form.locator("input[name=folder]")).to_have_value(str(walk["inbox"]))
        form.locator("input[name=sort]").check()
        form.locator("button", has_text="Predict folder").click()
        expect(page.locator("#job-status")).to_have_text("finished")
        expect(page.locator("#job-settings")).to_have_text(
            f"4 images from {walk['inbox']}, model of training #1, sorted into folders"
        )
        page.click("text=See predictions →")
        expect(page.locator("#predictions tbody tr")).to_have_count(4)
        expect(page.get_by_text("download sorted folders")).to_be_visible()
        step(page, "6-sorted")

        # 6. download the model
        with page.expect_download() as download:
            page.click("text=Download model #1 (.zip)")
        names = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())).namelist()
        assert "postcards-model/config.json" in names
        step(page, "7-download")
        assert page.request.get(walk["url"] + "/favicon.ico").ok
        browser.close()
    assert not missing, f"requests that failed: {missing}"
