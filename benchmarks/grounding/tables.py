"""Results tables in the layouts the benchmarks publish.

- ScreenSpot / ScreenSpot-v2: Mobile, Desktop, Web x Text, Icon, then the average —
  both the per-sample average and the unweighted mean of the six cells, labelled, since
  papers use both.
- ScreenSpot-Pro: per group (Dev, Creative, CAD, Scientific, Office, OS) Text / Icon /
  Avg, then overall (the reference's `leaderboard_simple_style` plus `overall`), and per
  application (its `leaderboard_detailed_style`).
- OSWorld-G: the five categories and overall over all samples, refusals included (a
  sample counts in every category it belongs to, as the reference evaluator counts it).

Each function takes per-sample results (`SampleScore`) and returns a `GroundingTable`
(numbers, for tests and JSON) that `render()` turns into a rich Table.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field
from rich.table import Table

__all__ = [
    "Cell", "GroundingTable", "SampleScore", "osworld_g_table",
    "screenspot_pro_application_table", "screenspot_pro_table", "screenspot_table",
    "table_for",
]

SCREENSPOT_PLATFORMS = ("mobile", "desktop", "web")
SCREENSPOT_PRO_GROUPS = ("Dev", "Creative", "CAD", "Scientific", "Office", "OS")
OSWORLD_G_CATEGORIES = ("text_matching", "element_recognition", "layout_understanding",
                        "fine_grained_manipulation", "refusal")


class SampleScore(BaseModel):
    """One judged sample: what the tables group by and its outcome."""

    sample_id: str
    outcome: str = Field(..., description="correct / wrong / wrong_format")
    platform: str | None = None
    ui_type: str | None = None
    group: str | None = None
    application: str | None = None
    categories: list[str] = Field(default_factory=list)
    read_as_relative: bool = Field(
        False, description="OSWorld-G: the answer's coordinates all lay in [0, 1] and were "
        "read as fractions of the image, as its scorer reads them")

    @property
    def correct(self) -> bool:
        return self.outcome == "correct"


class Cell(BaseModel):
    """Accuracy over `total` samples; `wrong_format` of them had no readable point."""

    correct: int = 0
    total: int = 0
    wrong_format: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    def add(self, score: SampleScore) -> None:
        self.total += 1
        self.correct += score.correct
        self.wrong_format += score.outcome == "wrong_format"


class GroundingTable(BaseModel):
    """Rows of named cells, plus summary lines (label -> accuracy)."""

    title: str
    columns: list[str]
    rows: dict[str, dict[str, Cell]]
    summary: dict[str, float | None] = Field(default_factory=dict)

    def render(self) -> Table:
        table = Table(title=self.title)
        table.add_column("")
        for column in self.columns:
            table.add_column(column, justify="right")
        for name, cells in self.rows.items():
            table.add_row(name, *(_percent(cells.get(c)) for c in self.columns))
        for label, value in self.summary.items():
            table.caption = ((table.caption + "\n") if table.caption else "") + (
                f"{label}: {'-' if value is None else f'{100 * value:.1f}%'}")
        return table


def _percent(cell: Cell | None) -> str:
    if cell is None or not cell.total:
        return "-"
    return f"{100 * cell.correct / cell.total:.1f} ({cell.correct}/{cell.total})"


def _overall(scores: list[SampleScore]) -> Cell:
    cell = Cell()
    for score in scores:
        cell.add(score)
    return cell


def screenspot_table(scores: Iterable[SampleScore], title: str = "ScreenSpot") -> GroundingTable:
    scores = list(scores)
    cells: dict[str, Cell] = {}
    for platform in SCREENSPOT_PLATFORMS:
        for ui_type in ("text", "icon"):
            cell = Cell()
            for score in scores:
                if score.platform == platform and score.ui_type == ui_type:
                    cell.add(score)
            cells[f"{platform.capitalize()} {ui_type.capitalize()}"] = cell
    overall = _overall(scores)
    filled = [c.accuracy for c in cells.values() if c.accuracy is not None]
    cells["Avg"] = overall
    return GroundingTable(
        title=title, columns=list(cells), rows={"accuracy %": cells},
        summary={
            "Avg over samples (correct / all samples)": overall.accuracy,
            "Avg over the six cells (unweighted mean of Mobile/Desktop/Web x Text/Icon)":
                sum(filled) / len(filled) if len(filled) == 6 else None,
            "wrong_format (no readable point), counted as wrong":
                overall.wrong_format / overall.total if overall.total else None,
        })


def screenspot_pro_table(scores: Iterable[SampleScore],
                         title: str = "ScreenSpot-Pro") -> GroundingTable:
    scores = list(scores)
    groups = list(SCREENSPOT_PRO_GROUPS) + sorted(
        {s.group or "?" for s in scores} - set(SCREENSPOT_PRO_GROUPS))
    rows: dict[str, dict[str, Cell]] = {}
    for group in [*groups, "Overall"]:
        members = [s for s in scores if group == "Overall" or (s.group or "?") == group]
        if not members and group not in SCREENSPOT_PRO_GROUPS:
            continue
        rows[group] = {
            "Text": _overall([s for s in members if s.ui_type == "text"]),
            "Icon": _overall([s for s in members if s.ui_type == "icon"]),
            "Avg": _overall(members),
        }
    overall = rows["Overall"]["Avg"]
    return GroundingTable(title=title, columns=["Text", "Icon", "Avg"], rows=rows, summary={
        "Overall (correct / all samples)": overall.accuracy,
        "wrong_format (no readable point), counted as wrong":
            overall.wrong_format / overall.total if overall.total else None,
    })


def screenspot_pro_application_table(scores: Iterable[SampleScore],
                                     title: str = "ScreenSpot-Pro per application"
                                     ) -> GroundingTable:
    """One row per application, Text / Icon / Avg: the leaderboard's detailed results
    (eval_screenspot_pro.py `evaluate_leaderboard_detailed_style`, keyed app:<name>)."""
    scores = list(scores)
    rows: dict[str, dict[str, Cell]] = {}
    for application in sorted({s.application or "?" for s in scores}):
        members = [s for s in scores if (s.application or "?") == application]
        rows[application] = {
            "Text": _overall([s for s in members if s.ui_type == "text"]),
            "Icon": _overall([s for s in members if s.ui_type == "icon"]),
            "Avg": _overall(members),
        }
    return GroundingTable(title=title, columns=["Text", "Icon", "Avg"], rows=rows)


def osworld_g_table(scores: Iterable[SampleScore], title: str = "OSWorld-G") -> GroundingTable:
    scores = list(scores)
    names = list(OSWORLD_G_CATEGORIES) + sorted(
        {c for s in scores for c in s.categories} - set(OSWORLD_G_CATEGORIES))
    rows = {name: {"Accuracy": _overall([s for s in scores if name in s.categories])}
            for name in names}
    rows["Overall"] = {"Accuracy": _overall(scores)}
    overall = rows["Overall"]["Accuracy"]
    relative = sum(s.read_as_relative for s in scores)
    return GroundingTable(title=title, columns=["Accuracy"], rows=rows, summary={
        "Overall (correct / all samples, refusals included)": overall.accuracy,
        "wrong_format (no readable point), counted as wrong":
            overall.wrong_format / overall.total if overall.total else None,
        f"read as relative (all coordinates in [0, 1], as OSWorld-G's scorer reads them; "
        f"{relative} of {overall.total} answers)":
            relative / overall.total if overall.total else None,
    })


def table_for(benchmark: str, scores: Iterable[SampleScore]) -> list[GroundingTable]:
    """The published table(s) for `benchmark` (ScreenSpot-Pro: positives, then negatives
    if the run has any, as the reference reports each gt_type on its own)."""
    scores = list(scores)
    if benchmark == "screenspot":
        return [screenspot_table(scores, "ScreenSpot")]
    if benchmark == "screenspot-v2":
        return [screenspot_table(scores, "ScreenSpot-v2")]
    if benchmark == "osworld-g":
        return [osworld_g_table(scores)]
    positives = [s for s in scores if "negative" not in s.categories]
    negatives = [s for s in scores if "negative" in s.categories]
    tables = ([screenspot_pro_table(positives, "ScreenSpot-Pro"),
               screenspot_pro_application_table(positives)] if positives else [])
    if negatives:
        tables.append(screenspot_pro_table(negatives, "ScreenSpot-Pro (negative samples)"))
    return tables
