"""HTML reports opened in a real browser: headless Chromium through Playwright.

Skipped, with the reason, where Chromium or Playwright is missing (install: ``apt-get install -y
chromium`` and ``pip install 'featurizer[dev]'``). The screenshots are kept under the test's
folder (and copied to ``$FEATURIZER_SCREENSHOTS`` when set) to look at by eye.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.test_flows import xfer

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (featurizer[dev])")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_report(browser, path: Path, screenshot: Path):
    """The page of ``path`` at 1280 px wide, its console errors, and a full-page screenshot."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.resolve().as_uri())
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get("FEATURIZER_SCREENSHOTS"):
        shutil.copy(screenshot, Path(os.environ["FEATURIZER_SCREENSHOTS"]) / screenshot.name)
    return page, errors


def items(path: Path) -> int:
    from featurizer import FeatureFile

    with FeatureFile(path) as f:
        return len(f)


def embedded(path: Path) -> dict:
    text = path.read_text()
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S).group(1))


def test_audit_report_renders_one_point_per_item_and_a_click_shows_the_item(browser, digit_features, tmp_path):
    train, test, _ = digit_features
    report = tmp_path / "audit.html"
    xfer("audit", train, test, "--report", report, "--map", "pca", "-o", tmp_path / "csv")
    assert (tmp_path / "csv" / "label_issues.csv").is_file() and (tmp_path / "csv" / "leaks.csv").is_file()
    page, errors = open_report(browser, report, tmp_path / "audit.png")
    points = page.locator("#map circle.pt")
    assert points.count() == len(embedded(report)["points"]) == items(train)  # every digit: none sampled out
    chosen = points.last  # drawn last, on top: a click reaches it
    item = embedded(report)["items"][chosen.get_attribute("data-i")]
    chosen.click()
    detail = page.locator("#detail").inner_text()
    assert item["id"] in detail and item["label"] in detail
    assert page.locator("#detail img").count() == 1  # the digit's thumbnail
    assert errors == []
    assert "no network" not in report.read_text() and "http://" not in report.read_text().replace(
        "http://www.w3.org/2000/svg", ""
    )  # self-contained: nothing fetched


def test_evaluate_report_shows_errors_and_a_row_normalised_confusion_matrix(browser, digit_features, tmp_path):
    from pipelines import fit, save_model

    train, test, _ = digit_features
    result = fit(train, "logreg", "-1")
    model = save_model(result.model, result.card, tmp_path / "digits.skops")
    report = tmp_path / "eval.html"
    xfer("evaluate", model, test, "--report", report, "--map", "pca")
    page, errors = open_report(browser, report, tmp_path / "eval.png")
    assert errors == []
    assert page.locator("#map circle.pt").count() == items(test)
    assert "Confusion matrix" in page.content() and "Worst errors" in page.content()
    cards = page.locator(".item")
    if cards.count():
        cards.first.click()
        assert "why marked" in page.locator("#detail").inner_text()
