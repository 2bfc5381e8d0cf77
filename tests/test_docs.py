"""The documentation: README's links resolve, the site builds strictly, and a real browser shows
its pages with every figure loaded (headless Chromium; skipped where Debian's chromium and
chromedriver are absent — setup_env.sh installs them where it can)."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import unicodedata

import pytest

from paper_lib import paths

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<img[^>]+src=\"([^\"]+)\"")
BUILD_TIMEOUT_S = 900  # stops a hung build only; its time is benchmarks/bench_docs.py's (goal ≤ 3 min)
PAGES_IN_BROWSER = ("", "notebooks/01_data_generation/")  # the landing page and a notebook


def _slug(heading: str) -> str:
    """The anchor MkDocs (and GitHub, for these headings) gives a Markdown heading."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(markdown_file) -> set[str]:
    text = re.sub(r"```.*?```", "", markdown_file.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.M)}


def broken_links(markdown_file) -> list[str]:
    """Relative links and images of a Markdown file whose file (or heading anchor) is missing."""
    broken = []
    for match in LINK.finditer(markdown_file.read_text()):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):  # https:, mailto: — not checked (no network in CI)
            continue
        path, _, anchor = target.partition("#")
        resolved = (markdown_file.parent / path) if path else markdown_file
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(target)
    return broken


def test_every_link_and_image_in_readme_resolves():
    readme = paths.root / "README.md"
    assert len(LINK.findall(readme.read_text())) > 10
    assert broken_links(readme) == []


def test_broken_links_are_found(tmp_path):
    (tmp_path / "page.md").write_text("# A page\n\n## Data\n")
    (tmp_path / "README.md").write_text(
        "[ok](page.md#data) ![gone](figures/none.png) [bad anchor](page.md#nothing) "
        "[web](https://example.org/x) <img src=\"missing.png\">\n")
    assert broken_links(tmp_path / "README.md") == [
        "figures/none.png", "page.md#nothing", "missing.png"]


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (paths.root / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    head = "\n".join(lines[:30])
    assert "./run_all.sh" in head and "./run_tests.sh" in head


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built as ./build_docs.sh builds it (strict), into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=paths.root, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, f"strict build failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_site_builds_strictly_with_the_executed_notebooks(site):
    for name in sorted((paths.results / "cpu" / "executed").glob("0*.ipynb")):
        page = site / "notebooks" / name.stem / "index.html"
        assert page.exists(), f"no page for {name.name}"
    first = (site / "notebooks" / "01_data_generation" / "index.html").read_text()
    assert "grid: 1771 nodes" in first  # a stored output of the cpu run, not a re-execution
    assert first.count("data:image/png;base64") >= 5  # the five figures notebook 01 saves
    assert (site / "api" / "index.html").read_text().count("predict_table") > 1


def test_strict_build_fails_on_a_broken_link(tmp_path):
    shutil.copytree(paths.root / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("*.md"))
    (tmp_path / "docs" / "index.md").write_text("# Home\n\n[gone](nowhere.md)\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: t\nstrict: true\n")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--site-dir",
                           str(tmp_path / "out")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT_S)
    assert done.returncode != 0 and "nowhere.md" in done.stderr


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(folder):
    """A folder over HTTP on localhost (as a reader's browser would load a site)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="module")
def served(site):
    server, url = _serve(site)
    yield url
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("headless Chromium absent: apt-get install chromium chromium-driver "
                    "(setup_env.sh does it when run as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


IMAGES_LOADED = """
const images = Array.from(document.images);
return {count: images.length, pending: images.filter(i => !i.complete).length,
        broken: images.filter(i => i.complete && i.naturalWidth === 0).map(i => i.src)};
"""


def load(browser, url) -> tuple[dict, list]:
    """Open a page, wait until it and its images have loaded; its images and console errors."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    WebDriverWait(browser, 30).until(
        lambda b: b.execute_script("return document.readyState") == "complete"
        and b.execute_script(IMAGES_LOADED)["pending"] == 0)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    return browser.execute_script(IMAGES_LOADED), errors


def test_the_browser_check_sees_a_broken_image(browser, tmp_path):
    (tmp_path / "index.html").write_text('<html><body><img src="missing.png"></body></html>')
    server, url = _serve(tmp_path)
    try:
        images, errors = load(browser, url)
    finally:
        server.shutdown()
    assert images["broken"] == [url + "missing.png"] and errors


@pytest.mark.parametrize("page", PAGES_IN_BROWSER)
def test_pages_show_their_figures_in_a_browser(browser, served, page, tmp_path):
    images, errors = load(browser, served + page)
    assert images["count"] >= 2 and images["broken"] == []
    assert errors == [], errors
    browser.execute_script("document.querySelector('article img').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "page.png"))  # at the page's first figure
    shots = os.environ.get("PAPER_LIB_SCREENSHOTS")  # a folder: keep the screenshots to look at
    if shots:
        shutil.copy(tmp_path / "page.png", os.path.join(shots, (page.strip("/").replace(
            "/", "_") or "index") + ".png"))
