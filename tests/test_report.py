"""HTML reports opened in a real browser: headless Chromium through Playwright.

Skipped, with the reason, where Chromium or Playwright is missing (install: ``apt-get install -y
chromium`` and ``pip install 'featurizer[dev]'``). The screenshots are kept under the test's
folder (and copied to ``$FEATURIZER_SCREENSHOTS`` when set) to look at by eye.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
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


def open_report(browser, path: Path, screenshot: Path | None = None):
    """The page of ``path`` at 1280 px wide and its problems: console errors (a CSP violation is
    one), uncaught script errors and dialogs (an ``alert`` that ran); a full-page screenshot if asked."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.goto(path.resolve().as_uri())
    if screenshot is not None:
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


# Text that once broke the page or could: template placeholders (the old str.replace filled them),
# Jinja syntax, markup and script endings, comment openers (which hid the JSON's end from the HTML
# parser), JavaScript line terminators, bidi overrides, entities.
HOSTILE = [
    "{{DATA}}",
    "{{TITLE}}",
    "{{ 7*7 }}",
    "{% if 1 %}x{% endif %}",
    "<!--<script>",
    "</script><script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "\u2028\u2029",
    "\u202eevil\u202c",
    "&amp;",
    "]]>",
    "</title><script>alert(1)</script>",
    "</style><script>alert(1)</script>",
    "--><script>alert(1)</script><!--",
    "'); alert(1); //",
    "\\u003c\\\\",
]


def hostile_report(text: str, modality: str, folder: Path):
    """A report with ``text`` in every place a user's data reaches: title, summary, ids, labels,
    texts or file names, reasons, gallery titles, notes and captions, table titles, headers and cells."""
    from PIL import Image

    from pipelines.report._report import Report

    plain = folder / "plain.png"
    Image.new("RGB", (8, 8), "teal").save(plain)
    named = f"{folder}/{text}.png"
    if "/" not in text:
        Image.new("RGB", (8, 8), "orange").save(named)
    if modality == "image":
        sources = [named, str(plain), named, str(plain)]
    else:
        sources = [text, f"a text about {text}", "plain text", text * 3]
    items = [(text, text, sources[0]), ("plain-1", "cat", sources[1]), ("plain-2", text, sources[2])]
    items.append((f"id {text}", "dog", sources[3]))
    return Report(
        title=f"Report of {text}",
        modality=modality,
        items=items,
        summary={text: text, "items": 4},
        map_rows=[0, 1, 2, 3],
        map_xy=np.array([[0.0, 0.0], [1.0, 0.5], [0.5, 1.0], [0.2, 0.8]]),
        map_method="PCA",
        marks={0: text, 3: f"why {text}"},
        galleries=[
            {"title": text, "note": text, "cards": [(0, text), (1, "plain"), (2, text)]},
            {"title": "Empty", "cards": []},
        ],
        tables=[
            {
                "title": text,
                "note": text,
                "header": [text, "value"],
                "rows": [[text, 0.5], ["plain", text]],
                "heat": True,
            },
            {"title": "Plain", "header": ["a", "b"], "rows": [[1, 2.0]]},
        ],
    )


PAGE_STATE = """() => ({
  title: document.querySelector("title").textContent,
  h1: document.querySelector("h1").textContent,
  cards: [...document.querySelectorAll(".card")].map(
    c => [c.querySelector("span").textContent, c.querySelector("b").textContent]),
  circles: [...document.querySelectorAll("#map circle.pt")].map(c => c.textContent),
  legend: [...document.querySelectorAll("#legend span")].map(s => s.textContent),
  galleries: [...document.querySelectorAll("#galleries section")].map(
    g => [g.querySelector("h2").textContent, [...g.querySelectorAll(".cap")].map(c => c.textContent)]),
  tables: [...document.querySelectorAll("section.table")].map(
    t => [...t.querySelectorAll("h2, .note, th, td")].map(c => c.textContent)),
  scripts: document.scripts.length,
  svgs: document.querySelectorAll("svg").length,
  handlers: [...document.querySelectorAll("*")].filter(
    e => [...e.attributes].some(a => a.name.startsWith("on"))).length,
})"""


@pytest.mark.parametrize("modality", ["text", "image"])
@pytest.mark.parametrize("text", HOSTILE, ids=ascii)
def test_hostile_text_anywhere_in_a_report_is_shown_as_text_and_runs_nothing(browser, tmp_path, text, modality):
    from pipelines.report._report import write_report

    report = write_report(hostile_report(text, modality, tmp_path), tmp_path / "hostile.html")
    page, errors = open_report(browser, report)
    state = page.evaluate(PAGE_STATE)
    assert state["title"] == state["h1"] == f"Report of {text}"
    assert state["cards"] == [[text, text], ["items", "4"]]
    assert state["circles"] == ["plain-1 (cat)", f"plain-2 ({text})", f"{text} ({text})", f"id {text} (dog)"]
    assert sorted(state["legend"]) == sorted({text, "cat", "dog"})
    assert state["galleries"] == [[f"{text} (3)", [text, "plain", text]], ["Empty (0)", []]]
    assert state["tables"] == [
        [text, text, text, "value", text, "0.500", "plain", text],
        ["Plain", "a", "b", "1", "2.000"],
    ]
    assert (state["scripts"], state["svgs"], state["handlers"]) == (2, 1, 0)  # nothing injected

    page.locator('#map circle[data-i="0"]').click()
    shown = page.locator("#detail bdi").evaluate_all("els => els.map(e => e.textContent)")
    if modality == "image":
        assert shown == [text, text, f"{tmp_path}/{text}.png", text]
        thumbs = page.locator("#detail img").evaluate_all("els => els.map(e => e.alt)")
        assert thumbs == ([] if "/" in text else [text])  # a file name with a slash is no file
    else:
        assert shown == [text, text, text]
        assert page.locator("#detail p").text_content() == text
    page.locator("#galleries .item").nth(2).click()  # the third card: item 2, not marked
    assert page.locator("#detail bdi").first.text_content() == "plain-2"
    assert errors == []
    page.close()


def test_the_page_policy_stops_injected_scripts_and_handlers_and_the_page_still_works(browser, tmp_path):
    from pipelines.report._report import write_report

    report = write_report(hostile_report("x", "text", tmp_path), tmp_path / "report.html")
    injected = '<img src=x onerror="alert(1)"><script>alert(2)</script><div id="bait" onclick="alert(3)">bait</div>'
    report.write_text(report.read_text().replace("<body>", "<body>" + injected, 1))
    page, errors = open_report(browser, report)
    page.locator("#bait").click()
    assert not [e for e in errors if e.startswith("dialog")] and not [e for e in errors if "Error" in e]
    assert any("Content Security Policy" in e for e in errors)  # refused, and said so
    assert page.locator("#map circle.pt").count() == 4 and page.locator("#galleries .item").count() == 3
    page.close()


def test_the_data_block_holds_no_markup_and_the_policy_allows_exactly_the_page_script(tmp_path):
    import base64
    import hashlib

    from pipelines.report._report import _payload, render_report, script_json

    report = hostile_report(" ".join(HOSTILE), "text", tmp_path)
    page = render_report(report)
    block = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert not set(block) & set("<>&\u2028\u2029")
    assert json.loads(block) == json.loads(json.dumps(_payload(report)))  # the escapes restore every character
    for text in HOSTILE:
        assert json.loads(script_json(text)) == text
        if "<" in text:
            assert text not in page  # escaped wherever it is
    assert '<meta name="generator" content="featurizer">' in page
    policy = html.unescape(re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page).group(1))
    assert "default-src 'none'" in policy.split(";")
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1 and page.count("<script") == 2
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f" script-src 'sha256-{digest}'" in policy.split(";")  # that script and no other


def test_audit_report_of_classes_named_like_markup(browser, digit_features, digits_dir, tmp_path):
    from featurizer import featurize

    names = {"0": "<img src=x onerror=alert(1)>", "1": "{{DATA}}", "2": "<!--<script>"}
    for digit, name in names.items():
        shutil.copytree(digits_dir / "train" / digit, tmp_path / "train" / name)
    train = tmp_path / "train.h5"
    featurize(
        tmp_path / "train",
        "efficientnet_lite0",
        ["-1", "-3"],
        output=train,
        cache_dir=digit_features[2],
        progress=False,
    )
    report = tmp_path / "audit.html"
    xfer("audit", train, "--report", report, "--map", "pca", "-o", tmp_path / "csv")
    page, errors = open_report(browser, report, tmp_path / "hostile-audit.png")
    assert sorted(page.locator("#legend span").all_text_contents()) == sorted(names.values())
    assert page.locator("#map circle.pt").count() == items(train)
    page.locator("#map circle.pt").last.click()
    assert page.locator("#detail bdi").nth(1).text_content() in names.values()
    assert errors == []
    page.close()
