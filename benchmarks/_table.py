"""Rows of the comparison and the one table they print as (Markdown, so it pastes into docs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FRAMEWORKS = ("nbflow", "prefect", "dask")
TITLES = {"nbflow": "nbflow", "prefect": "Prefect", "dask": "Dask"}

NA = "—"  # the workload has no counterpart in that framework


@dataclass
class Row:
    """One workload: a number per framework, or a short word saying why there is none.

    Ratios are always peer / nbflow, so for times and sizes a ratio above 1 means nbflow is
    ahead (for throughputs, below 1).
    """

    workload: str
    unit: str
    values: dict[str, float | None] = field(default_factory=dict)
    cells: dict[str, str] = field(default_factory=dict)  # text shown instead of a missing value
    target: str = ""
    target_max: float | None = None  # nbflow's value must be at most this to meet the target
    target_min: float | None = None  # ... or at least this (throughputs such as GB/s)
    notes: list[str] = field(default_factory=list)
    error: bool = False  # an nbflow measurement failed (not skipped): the run exits non-zero

    def set(self, framework: str, value: float | None, cell: str = "") -> None:
        self.values[framework] = value
        if value is None:
            self.cells[framework] = cell or NA

    def ratio(self, peer: str) -> float | None:
        ours, theirs = self.values.get("nbflow"), self.values.get(peer)
        if ours is None or theirs is None or ours <= 0:
            return None
        return theirs / ours

    def met(self) -> bool | None:
        value = self.values.get("nbflow")
        if value is None or (self.target_max is None and self.target_min is None):
            return None
        return (self.target_max is None or value <= self.target_max) and (
            self.target_min is None or value >= self.target_min)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratios"] = {p: self.ratio(p) for p in FRAMEWORKS[1:]}
        data["target_met"] = self.met()
        return data


def row_from_plugin(raw: dict[str, Any]) -> Row:
    """A row handed back by another benchmarks module's `run()`; see benchmarks/README.md."""
    row = Row(
        workload=str(raw.get("workload") or raw.get("name") or "?"),
        unit=str(raw.get("unit", "")),
        target=str(raw.get("target", "")),
        target_max=raw.get("target_max"),
        target_min=raw.get("target_min"),
    )
    for fw in FRAMEWORKS:
        value = raw.get(fw, raw.get("value") if fw == "nbflow" else None)
        row.set(fw, float(value) if isinstance(value, (int, float)) else None,
                value if isinstance(value, str) else "")
    if raw.get("note"):
        row.notes.append(str(raw["note"]))
    return row


def fmt_number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.01:
        return f"{value:.2f}"
    return f"{value:.2g}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}×" if value >= 10 else f"{value:.2f}×"


def render(rows: list[Row], frameworks: tuple[str, ...] = FRAMEWORKS) -> str:
    """The table, then the numbered notes that its cells refer to."""
    header = ["workload", *(TITLES[f] for f in frameworks)]
    header += [f"{TITLES[p]}/nbflow" for p in frameworks if p != "nbflow"]
    header.append("nbflow target")
    notes: list[str] = []
    lines = []
    for row in rows:
        marks = ""
        for note in row.notes:
            notes.append(note)
            marks += f" [{len(notes)}]"
        cells = [f"{row.workload} ({row.unit}){marks}" if row.unit else row.workload + marks]
        for fw in frameworks:
            value = row.values.get(fw)
            cells.append(fmt_number(value) if value is not None else row.cells.get(fw, NA))
        cells += [fmt_ratio(row.ratio(p)) for p in frameworks if p != "nbflow"]
        met = row.met()
        verdict = {True: " ✓", False: " ✗ missed", None: ""}[met]
        cells.append(f"{row.target}{verdict}" if row.target else "")
        lines.append(cells)
    widths = [max(len(c) for c in col) for col in zip(header, *lines)]
    right = {i for i in range(1, len(header) - 1)}  # numbers and ratios align right

    def join(cells: list[str]) -> str:
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |"

    out = [join(header), "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                                        for i, w in enumerate(widths)) + "|"]
    out += [join(cells) for cells in lines]
    if notes:
        out.append("")
        out += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(out)
