"""The README is a map: short, every link resolves, and its Python tour runs as written."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not a link
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"(https?|mailto):", t)]


def anchors(page: Path) -> set[str]:
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_the_readme_is_a_map_of_at_most_300_lines():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for term in ("ATRM", "CLIM", "KPS"):  # each defined before the quick start uses it
        assert text.index(term) < text.index("## Quick start"), term
    assert "make demo" in text and "make test" in text and "make lab" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert broken == []


def test_the_readme_names_every_page_of_the_manual():
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, page.name


@pytest.mark.slow
def test_the_readmes_python_tour_runs_as_written(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    tour = text[text.index("## A short tour"):]
    code = re.search(r"```python\n(.*?)```", tour, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (the README's own code)
    assert namespace["fresh"].config.atrm_k == 8 and namespace["model"].context_length == 77
    assert len(namespace["scenes"]) == 200 and "global/t2i/R@1" in namespace["result"].metrics
    record = namespace["record"]
    assert record["status"] == "ok" and record["settings"]["model.atrm_k"] == 8 and (tmp_path / "runs" / "k8.json").is_file()
