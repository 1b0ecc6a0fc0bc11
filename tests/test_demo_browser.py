"""The demo in a real browser: Debian's chromium driven by Playwright uploads an image and sees the label."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from share_helpers import LABELS, free_port, tiny_run

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]

_SHOWS_LABEL = (
    "(want) => document.querySelector('[data-testid=\"label-output-value\"]')?.textContent.trim() === want"
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The demo of a tiny run, launched on 127.0.0.1; yields (url, run folder)."""
    from sortsight.demo import build_demo, launch_demo

    run = tiny_run(tmp_path_factory.mktemp("share"))
    demo = build_demo(run, top_k=2, engine="eager")
    url = launch_demo(demo, port=free_port(), block=False)
    try:
        yield url, run
    finally:
        demo.close()


def test_upload_an_image_and_see_the_label(served: tuple[str, Path]) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing (/usr/bin/chromium): run the project's install script, "
                    "bash scripts/install.sh")
    from playwright.sync_api import sync_playwright

    from sortsight.predict import Classifier

    url, run = served
    image = run.parent / "data" / "circle" / "circle_003.png"
    expected = Classifier.load(run, engine="eager").predict(str(image), top_k=2)
    outside: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("request", lambda request: _note_outside(request, outside))
            page.goto(url)
            page.get_by_text("Shapes sorter").first.wait_for(timeout=30_000)
            page.locator("input[type=file]").first.set_input_files(str(image))
            page.get_by_role("button", name="Submit").click()
            top = page.locator('[data-testid="label-output-value"]')
            top.wait_for(timeout=30_000)
            page.wait_for_function(_SHOWS_LABEL, arg=expected[0]["label"], timeout=30_000)
            shown = top.inner_text().strip()
            body = page.locator("body").inner_text()
            page.screenshot(path=str(ARTIFACTS / "app_demo.png"), full_page=True)
        finally:
            browser.close()
    assert shown == expected[0]["label"] and shown in LABELS
    assert f"{round(expected[0]['score'] * 100)}%" in body  # the probability is shown too
    assert "Limitations" in body  # the article from the model card
    assert not outside, f"the page reached outside this machine: {outside}"


def _note_outside(request: Any, outside: list[str]) -> None:
    host = urllib.parse.urlsplit(request.url).hostname
    if request.url.startswith(("data:", "blob:")) or host in {"127.0.0.1", "localhost"}:
        return
    outside.append(request.url)
