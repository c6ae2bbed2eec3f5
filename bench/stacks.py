"""Summarise a py-spy ``raw`` recording (collapsed stacks): ``python -m bench.stacks FILE``.

Prints the functions with the most samples on top of the stack (self) and anywhere in it
(inclusive, leaving out frames in every sample), as shares of all samples. ``--under
TEXT`` keeps only the stacks through a frame containing TEXT, ``--top N`` sets the length
of each list. For the recordings of
``python -m bench --case-a-only --profile`` (``bench/out/case-a.<role>.pyspy``).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: py-spy writes frames as ``function (path/to/file.py:line)``: the line is dropped so
#: a function's samples add up.
_LINE = re.compile(r":\d+\)$")


def _frame(text: str) -> str:
    return _LINE.sub(")", text.strip())


def summarise(path: Path, under: str | None, top: int) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        if under is not None:
            hits = [i for i, f in enumerate(frames) if under in f]
            if not hits:
                continue
            frames = frames[hits[0] :]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    lines = [f"{path}: {total:,} samples" + (f" under {under!r}" if under else "")]
    for title, counts in (("self", own), ("inclusive", inclusive)):
        lines.append(f"-- {title}")
        # Frames in every sample (the entry points) say nothing: left out.
        shown = [(f, n) for f, n in counts.most_common() if n < total or counts is own]
        for f, n in shown[:top]:
            lines.append(f"{100 * n / max(1, total):6.1f} %  {f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.stacks", description=__doc__)
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--under", help="only stacks through a frame containing this text")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    for path in a.files:
        print(summarise(path, a.under, a.top))


if __name__ == "__main__":
    main()
