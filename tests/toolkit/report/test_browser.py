"""report.html in a real browser: headless Chromium (Debian's chromium + chromium-driver) via selenium.

Checks that every plot image decodes (naturalWidth > 0), the tables have rows, nothing is fetched from the
network, and the console has no errors. The full-page screenshot is saved as a test artifact:
``tests/_artifacts/report.png`` (gitignored).
"""

import shutil
import tempfile
from pathlib import Path

import pytest

from toolkit.report import write_reports

ARTIFACTS = Path(__file__).resolve().parents[2] / "_artifacts"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Debian's /usr/bin/chromium is a wrapper script; chromedriver needs the binary itself.
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if Path(p).exists()), None)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--window-size=1280,1000")


@pytest.fixture
def browser():
    if CHROMIUM is None or not Path(CHROMEDRIVER).exists():
        pytest.fail("headless Chromium is missing: run .ci/system-deps.sh (Debian packages chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="safecompress-chromium-")
    opts = webdriver.ChromeOptions()
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.browser
def test_report_renders_in_chromium(browser, run_report, tmp_path):
    report, _ = run_report
    write_reports(dict(report, files=dict(report["files"])), tmp_path)
    browser.get((tmp_path / "report.html").as_uri())
    ready = browser.execute_script("return document.readyState")
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    tables = browser.execute_script(
        "return Array.from(document.querySelectorAll('table')).map(t => [t.className, t.tBodies[0].rows.length])")
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    logs = browser.get_log("browser")

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 40, 12000))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000

    assert ready == "complete"
    assert len(images) == 3 and all(ok and w > 0 and h > 0 for _, ok, w, h in images), images
    by_class = dict(tables)
    assert by_class["gate"] == len(report["gate"]["worst"])
    assert by_class["attacks"] == len(report["attacks"])
    assert by_class["candidates"] == len(report["candidates"]) and by_class["selected"] == 1
    assert by_class["versions"] > 3
    assert not [u for u in fetched if not u.startswith("data:")], fetched
    assert not [e for e in logs if e["level"] in ("SEVERE", "ERROR")], logs
    text = browser.find_element("tag name", "body").text
    assert "Gate verdict" in text and "FAIL" in text and "Selected model" in text
