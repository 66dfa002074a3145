"""The documentation's links and commands stay true: every relative link of the README and of the
package's doc/ pages (the pages rosdoc2 builds) names a file that exists, every doc page has one
title, the README's test command is the one CI runs, and rosdoc2 builds the pages and the API
reference of both packages without a warning."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parents[2]
README = REPO / "README.md"
PAGES = sorted((PACKAGE / "doc").glob("*.md"))

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text):
    """The lines of a markdown text outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def relative_links(path):
    for line in prose(path.read_text()):
        for target in LINK.findall(line):
            if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
                yield target


def test_the_doc_pages_exist():
    assert {p.name for p in PAGES} >= {"training.md", "robots.md", "ros2.md", "hardware.md",
                                       "multi_host.md", "security.md", "results.md", "testing.md",
                                       "benchmarks.md"}


@pytest.mark.parametrize("path", [README] + PAGES, ids=lambda p: p.name)
def test_every_relative_link_names_a_file(path):
    missing = [t for t in relative_links(path)
               if not (path.parent / t.split("#")[0]).exists()]
    assert not missing, f"{path.name} links to files that do not exist: {missing}"


def test_the_readme_links_every_doc_page():
    linked = {(README.parent / t.split("#")[0]).resolve() for t in relative_links(README)}
    unlinked = [p.name for p in PAGES if p.resolve() not in linked]
    assert not unlinked, f"the README's documentation list misses {unlinked}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_a_doc_page_has_one_title_and_no_readme_anchors(path):
    titles = [line for line in prose(path.read_text()) if line.startswith("# ")]
    assert len(titles) == 1, f"{path.name}: titles {titles}"
    # links to sections of the old one-page README do not resolve in the Sphinx build
    assert not [t for t in relative_links(path) if "#" in t]


def test_the_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text()
    command = ci.split("keep identical to the README) ---\n", 1)[1].strip().splitlines()[0]
    assert command in README.read_text()


@pytest.mark.parametrize("package", ["gps_ros", "gps_msgs"])
def test_rosdoc2_builds_the_documentation_without_a_warning(package, tmp_path):
    """What ``rosdoc2 build --package-path ros2_ws/src/<package>`` says: every page and every
    docstring renders (valid reStructuredText / MyST, links resolve, one target per type hint)."""
    exe = Path(sys.executable).with_name("rosdoc2")      # this environment's, not another's
    if not exe.exists():
        pytest.skip("rosdoc2 is not installed (pip install rosdoc2; the [test] extra has it)")
    run = subprocess.run([exe, "build", "--package-path", str(PACKAGE.parent / package)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    problems = [line for line in out.splitlines()
                if ("WARNING" in line or "ERROR" in line) and not line.startswith("[rosdoc2] [INFO]")]
    assert not problems, "\n".join(problems[:20])
    assert (tmp_path / "docs_output" / package / "index.html").is_file()
    if package == "gps_ros":
        pages = {p.stem for p in PAGES}
        built = {p.stem for p in (tmp_path / "docs_output" / package / "user_docs").glob("*.html")}
        assert pages <= built, pages - built
