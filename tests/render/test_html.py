"""The HTML report, loaded in a real headless Chromium (Debian's ``chromium``, driven by
Playwright): the verdict, the root cause, one plot per drifted tensor, no failed resource
loads, and a screenshot that is not blank. The drift is real: examples/mlp.py built under a
changed ``nn.Linear`` default against the committed snapshot (conftest.zero_bias_drift)."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest

from initaudit.snapshot import values_path_for

from ..conftest import EXAMPLES, MLP_SNAPSHOT, run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MLP = MLP_SNAPSHOT

@pytest.fixture(scope="module")
def browser():
    """A headless Chromium; missing, the tests skip (CI sets INITAUDIT_REQUIRE_BROWSER=1)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("INITAUDIT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"INITAUDIT_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
        pytest.skip("needs Debian's chromium (apt-get install chromium); .ci/run installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def load(browser, path: Path, tmp_path: Path):
    """Open ``path``; return the page, the failed requests, console errors and a screenshot."""
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    failed: list[str] = []
    requests: list[str] = []
    errors: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    shot = tmp_path / (path.stem + ".png")
    page.screenshot(path=str(shot))
    # the only request is the page itself: no CDN, no font, no image fetched
    assert requests == [path.as_uri()] and failed == [] and errors == []
    return page, shot


def not_blank(png: Path) -> None:
    """The screenshot shows something: many colours, not one flat page."""
    from PIL import Image

    img = Image.open(io.BytesIO(png.read_bytes())).convert("RGB")
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50, "the screenshot is (nearly) blank"
    white = max(colors)[0] / (img.width * img.height)
    assert white < 0.97, f"the screenshot is {white:.0%} one colour"


def test_diff_report_in_chromium(browser, zero_bias_drift, tmp_path):
    before, after = zero_bias_drift
    report = tmp_path / "diff.html"
    proc = run_cli("diff", str(before), str(after), "--format", "html", "--out", str(report))
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr  # drift: exit 1, page in file
    data = json.loads(run_cli("diff", str(before), str(after), "--format", "json").stdout)
    drifted_names = [t["name"] for t in data["tensors"] if t["status"] != "identical"]
    assert data["root_cause"] == "hid1.bias" and len(drifted_names) == 5
    text = report.read_text()
    assert len(text) < 1_000_000 and "http://" not in text and "https://" not in text
    page, shot = load(browser, report, tmp_path)
    assert page.inner_text("#verdict").startswith("DRIFT: 5 of 6 tensors differ")
    assert page.inner_text("#root-cause .rc-name") == "hid1.bias"
    assert "recipe-drift" in page.inner_text("#root-cause")
    assert "sitecustomize.py:9" in page.inner_text("#root-cause .rc-site")
    cards = page.query_selector_all("article.tensor.drifted")
    assert [c.get_attribute("data-name") for c in cards] == drifted_names
    for card in cards:  # before/after histograms overlaid, and the error distribution
        assert len(card.query_selector_all("figure.plot-values svg")) == 1
        assert len(card.query_selector_all("figure.plot-error svg")) == 1
    assert page.inner_text("#identical summary").startswith("1 identical")
    # the filter box narrows the list by name
    page.fill("#filter", "hid2")
    visible = [c.get_attribute("data-name") for c in cards if c.is_visible()]
    assert visible == ["hid2.weight", "hid2.bias"]
    not_blank(shot)


def test_inspect_report_in_chromium(browser, tmp_path):
    report = tmp_path / "inspect.html"
    run_cli(
        "inspect", str(EXAMPLES / "highway.py"), "--no-rerun", "-q",
        "--format", "html", "--out", str(report), check=0,
    )  # fmt: skip
    data = json.loads(
        run_cli("inspect", str(EXAMPLES / "highway.py"), "--no-rerun", "--format", "json").stdout
    )
    rows = data["tensors"]
    random = [r["name"] for r in rows if r["stats"].get("min") != r["stats"].get("max")]
    page, shot = load(browser, report, tmp_path)
    assert page.inner_text("#verdict").startswith("OK: no error findings")
    cards = page.query_selector_all("article.tensor.card")
    assert [c.get_attribute("data-name") for c in cards] == random
    for card in cards:  # each histogram against the density its recipe predicts
        assert len(card.query_selector_all("figure.plot-recipe svg")) == 1
        assert "predicted σ" in card.inner_text()
    conv = page.query_selector('article[data-name="conv_1_3x3.weight"]').inner_text()
    assert "N(0, 0.1179)" in conv and "ok" in conv
    assert "set to one constant value" in page.inner_text("#constants summary")
    not_blank(shot)


def test_matrix_report_in_chromium(browser, zero_bias_drift, tmp_path):
    before, after = zero_bias_drift
    folder = tmp_path / "both"
    for i, snap in enumerate((before, after)):
        (folder / str(i)).mkdir(parents=True)
        shutil.copy(snap, folder / str(i) / snap.name)
        shutil.copy(values_path_for(snap), folder / str(i))
    report = tmp_path / "matrix.html"
    proc = run_cli("diff", str(folder), "--format", "html", "--out", str(report))
    assert proc.returncode == 1, proc.stderr
    page, shot = load(browser, report, tmp_path)
    assert page.inner_text("#verdict").startswith("DRIFT: 1 of 1 upgrade step")
    cells = page.query_selector_all("table.grid tbody tr")
    assert len(cells) == 6
    statuses = [r.query_selector_all("td")[2].inner_text() for r in cells]
    assert statuses.count("identical") == 1 and statuses.count("recipe-drift") == 3
    not_blank(shot)


def test_out_needs_html(tmp_path):
    proc = run_cli("diff", str(MLP), str(MLP), "--out", str(tmp_path / "x.html"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--format html" in proc.stderr
    assert not (tmp_path / "x.html").exists()
