#!/usr/bin/env python3
"""Dead-link check for the repository's Markdown: every relative link in a tracked `.md` file (the
README, docs/, CONTRIBUTING.md, deploy/README.md, ...) must name a file or folder that exists, and a
`#fragment` on a Markdown target must match one of its headings (GitHub's anchor rules). External
links (http, https, mailto) are not fetched. Prints each dead link as `file:line: target` and exits 1
if there is any. Run from anywhere: `python3 scripts/check_links.py`; run by scripts/check_ops.sh.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# [text](target) and [text](target "title"); images too. Reference-style links are not used here.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_files():
    """The tracked Markdown files (and untracked ones git does not ignore)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return [ROOT / p for p in out.splitlines() if (ROOT / p).is_file()]


def links(path):
    """(line number, target) of every inline link outside fenced code blocks and code spans."""
    fenced = False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        for m in LINK.finditer(re.sub(r"`[^`]*`", "``", line)):
            yield n, m.group(1)


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    """Every heading anchor of a Markdown file (duplicates numbered as GitHub does)."""
    seen = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        if fenced or not line.startswith("#"):
            continue
        a = anchor(line.lstrip("#"))
        k = seen.get(a, 0)
        seen[a] = k + 1
        yield a if k == 0 else f"{a}-{k}"


def dead(path, target):
    """Why `target`, linked from `path`, is dead; None when it resolves."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
        return None  # http:, https:, mailto: ...
    file_part, _, fragment = target.partition("#")
    dest = (path.parent / file_part).resolve() if file_part else path
    if not dest.exists():
        return "no such file"
    if fragment and dest.suffix == ".md" and fragment.lower() not in set(anchors(dest)):
        return f"no heading #{fragment} in {dest.relative_to(ROOT)}"
    return None


def main():
    """Checks every Markdown file; prints the dead links; 1 if there is any."""
    files = markdown_files()
    bad = 0
    count = 0
    for path in files:
        for n, target in links(path):
            count += 1
            why = dead(path, target)
            if why:
                bad += 1
                print(f"{path.relative_to(ROOT)}:{n}: {target}: {why}")
    print(f"links: {count} relative and external links in {len(files)} Markdown files, {bad} dead")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
