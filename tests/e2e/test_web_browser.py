"""The web page in a real headless browser (Debian's chromium driven by Playwright): ask, see the answer and its
highlighted citation, see a refusal. Skipped when /usr/bin/chromium or the playwright package is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag_kit import ANSWER, ANSWERABLE, UNANSWERABLE, Server, serve_config, shared_parts

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason="chromium not installed (apt-get install chromium)")


def test_ask_answer_citation_and_refusal(tiny_bert, tiny_lm, tmp_path_factory, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from ragtune.rag.ask import RagPipeline
    from ragtune.rag.server import create_app

    kb, model = shared_parts(tmp_path_factory, tiny_bert, tiny_lm)
    cfg = serve_config(kb, model)
    with RagPipeline.open(cfg) as rag, Server(create_app(rag, cfg)[0]) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url + "/")
            assert page.title().startswith("ragtune")

            page.fill("#question", ANSWERABLE)
            page.click("#ask-button")
            page.wait_for_selector("#answer-card:not([hidden])", timeout=60_000)
            assert page.inner_text("#answer-text") == ANSWER
            assert "Answered" in page.inner_text("#answer-badge")
            cited = page.locator(".ctx.cited")
            assert cited.count() == 1
            assert "heart.txt" in cited.locator("h3").inner_text()
            assert cited.locator("mark .answer").inner_text() == ANSWER  # the answer highlighted in its passage
            assert "heart pumps blood" in cited.locator("mark").inner_text()
            page.screenshot(path=str(tmp_path / "answered.png"), full_page=True)

            page.fill("#question", UNANSWERABLE)
            page.click("#ask-button")
            page.wait_for_function("document.querySelector('#answer-badge').textContent.startsWith('Refused')",
                                   timeout=60_000)
            assert page.locator("#answer-card.refused").count() == 1
            assert page.locator(".ctx.cited").count() == 0
            page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)

            page.fill("#question", "   ")
            page.click("#ask-button")
            assert "Type a question" in page.inner_text("#status")
        finally:
            browser.close()
    assert (tmp_path / "answered.png").stat().st_size > 5_000
