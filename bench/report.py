"""The results table: plain text for the terminal, markdown for ``bench/out/latest.md``."""

from __future__ import annotations

from dataclasses import dataclass

HEADERS = ("#", "measurement", "result", "vs ceiling", "notes")


@dataclass
class Row:
    key: str
    measurement: str
    result: str
    ratio: str = ""
    notes: str = ""
    #: A rate to show as a ratio to the ceiling, filled in once the ceiling is final.
    per_s: float | None = None

    def cells(self) -> tuple[str, ...]:
        return (self.key, self.measurement, self.result, self.ratio, self.notes)


def rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def p99_of(ordered: list[float]) -> float:
    """The 99th percentile of sorted, non-empty ``ordered`` (the nearest rank below)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def ratio(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.2f}x" if ceiling > 0 else "n/a"


def text_table(rows: list[Row]) -> str:
    table = [HEADERS, *(r.cells() for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    right = {2, 3}  # numbers right-aligned

    def fmt(line: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(HEADERS), rule, *(fmt(r.cells()) for r in rows)])


def markdown_table(rows: list[Row]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    lines += ["| " + " | ".join(esc(c) for c in r.cells()) + " |" for r in rows]
    return "\n".join(lines)
