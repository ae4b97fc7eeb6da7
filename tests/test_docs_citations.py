"""Citations stay inside the repository: no file points at the team's private design notes, and
every cited section of docs/reference_systems.md exists."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the design notes and the reference description by file name or with a section number (spelt in pieces: not self-matching)
_OUTSIDE = re.compile(r"\b(" + "DES" + "IGN|" + "REFER" + r"ENCE)(\.md|\s\d)")
_SECTION = re.compile(r"reference_systems\.md\s+section (\d+(?:\.\d+)?)")
_HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.MULTILINE)
_BUGS = re.compile(r"section 7 (#\d+(?:, #\d+)*)")
_TABLE_ROW = re.compile(r"^\| (\d+) \|", re.MULTILINE)


def _tracked(*suffixes: str) -> list[Path]:
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    return [REPO / n for n in names if n.endswith(suffixes) and (REPO / n).is_file()]


def test_no_file_cites_documents_outside_the_repository():
    offending = [f"{path.relative_to(REPO)}:{i}: {line.strip()}"
                 for path in _tracked(".py", ".json", ".md")
                 for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if _OUTSIDE.search(line)]
    assert offending == []


def test_cited_sections_and_bug_numbers_of_the_reference_page_exist():
    page = (REPO / "docs" / "reference_systems.md").read_text(encoding="utf-8")
    sections = {m.group(1) for m in _HEADING.finditer(page)}
    bugs = {m.group(1) for m in _TABLE_ROW.finditer(page.split("## 7.")[1].split("## 8.")[0])}
    cited, missing = 0, []
    for path in _tracked(".py", ".json", ".md"):
        text = path.read_text(encoding="utf-8")
        for m in _SECTION.finditer(text):
            cited += 1
            if m.group(1) not in sections:
                missing.append(f"{path.relative_to(REPO)}: section {m.group(1)}")
        for m in _BUGS.finditer(text):
            missing += [f"{path.relative_to(REPO)}: section 7 {n}" for n in m.group(1).split(", ") if n[1:] not in bugs]
    assert cited > 20 and missing == []
