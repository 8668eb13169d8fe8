"""The grounding metric's edge rules and the published tables (parity with the reference
evaluators' rules, recorded as facts below; table values computed by hand).

Facts:

| rule | source (repo / path / commit) |
|---|---|
| box: x1 <= x <= x2 and y1 <= y <= y2 (edges in) | njucckevin/SeeClick pretrain/screenspot_test.py @ 661ff1b2; likaixin2000/ScreenSpot-Pro-GUI-Grounding eval_screenspot_pro.py @ 588f1f25 `eval_sample_positive_gt`; open-compass/VLMEvalKit vlmeval/dataset/GUI/osworld_g.py @ d47d6c72 `_is_point_in_rectangle` |
| polygon: even-odd crossing test `(yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi` | VLMEvalKit osworld_g.py `_is_point_in_polygon` (OSWorld-G's GroundingEval._eval, which Onifin/Holo3.1-OSWorld-G evaluation/holo_osworld_g.py @ 0fbdd890 imports) |
| refusal: correct iff both coordinates of the predicted point are < 0 | same `_eval`; Holo's parser returns [-1, -1, -1, -1] for a refusal, [0, 0, 0, 0] for an unparseable answer |
| negative samples: correct iff the model answers "negative" | eval_screenspot_pro.py `eval_sample_negative_gt` |
| no point: "wrong_format", in the denominator, counted apart | eval_screenspot_pro.py `calc_metric_for_result_list` (action_acc = correct / num_total); screenspot_test.py (num_wrong_format, counted 0 in text/icon lists) |

OSWorld-G's `_eval` treats a prediction whose numbers all lie in [0, 1] as fractions of
the image; so does our OSWorld-G run (a point within one pixel of the top-left corner is
rescaled), and its table says how many answers were read that way
(tests/test_grounding_tables_parity.py).
"""

from __future__ import annotations

import pytest

from benchmarks.grounding.data import Region
from benchmarks.grounding.metric import judge, point_in_box, point_in_polygon
from benchmarks.grounding.tables import (
    SampleScore,
    osworld_g_table,
    screenspot_pro_table,
    screenspot_table,
    table_for,
)

BOX = Region.from_corners(10, 20, 30, 40)


@pytest.mark.parametrize(("point", "inside"), [
    ((10, 20), True), ((30, 40), True), ((10, 40), True), ((20, 30), True),  # corners, centre
    ((9.999, 30), False), ((30.001, 30), False), ((20, 19.999), False), ((20, 40.001), False),
])
def test_box_edges_included(point: tuple[float, float], inside: bool) -> None:
    assert point_in_box(point, BOX.box) is inside
    assert judge(BOX, point, refused=False) == ("correct" if inside else "wrong")


SQUARE = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))
# An L shape: its bounding-box centre (5, 5) lies outside it.
L_SHAPE = Region.from_polygon([0, 0, 10, 0, 10, 4, 4, 4, 4, 10, 0, 10])


@pytest.mark.parametrize(("point", "inside"), [
    ((5, 5), True), ((0.001, 5), True), ((9.999, 5), True), ((-0.001, 5), False),
    ((10.001, 5), False), ((5, 10.001), False),
    # edges as the crossing test decides: left and top edges in, right and bottom out
    ((0, 5), True), ((10, 5), False), ((5, 0), True), ((5, 10), False),
])
def test_polygon_crossing_rule(point: tuple[float, float], inside: bool) -> None:
    assert point_in_polygon(point, SQUARE) is inside


def test_concave_polygon() -> None:
    assert judge(L_SHAPE, (5, 5), refused=False) == "wrong"
    assert judge(L_SHAPE, (2, 8), refused=False) == "correct"
    assert judge(L_SHAPE, (8, 2), refused=False) == "correct"
    assert L_SHAPE.area_px() == 64


def test_refusal_and_negatives() -> None:
    refusal = Region(kind="refusal")
    assert judge(refusal, (-1, -1), refused=True) == "correct"
    assert judge(refusal, (5, 5), refused=False) == "wrong"
    assert judge(refusal, None, refused=False) == "wrong_format"
    assert judge(BOX, (-1, -1), refused=True) == "wrong"  # refusing a real target


def test_unparseable_is_wrong_format() -> None:
    assert judge(BOX, None, refused=False) == "wrong_format"


def score(outcome: str, platform: str | None = None, ui: str | None = None,
          group: str | None = None, categories: list[str] | None = None) -> SampleScore:
    return SampleScore(sample_id=f"s{id(outcome)}", outcome=outcome, platform=platform,
                       ui_type=ui, group=group, categories=categories or [])


def test_screenspot_table_by_hand() -> None:
    scores = ([score("correct", "mobile", "text")] * 3 + [score("wrong", "mobile", "text")]
              + [score("correct", "mobile", "icon")] + [score("wrong_format", "mobile", "icon")]
              + [score("correct", "desktop", "text")] + [score("wrong", "desktop", "icon")]
              + [score("correct", "web", "text")] * 2 + [score("correct", "web", "icon")])
    table = screenspot_table(scores)
    cells = table.rows["accuracy %"]
    assert cells["Mobile Text"].accuracy == 0.75 and cells["Mobile Icon"].accuracy == 0.5
    assert cells["Desktop Icon"].accuracy == 0.0 and cells["Web Text"].accuracy == 1.0
    assert cells["Avg"].correct == 8 and cells["Avg"].total == 11
    summary = list(table.summary.values())
    assert summary[0] == pytest.approx(8 / 11)  # per sample
    assert summary[1] == pytest.approx((0.75 + 0.5 + 1 + 0 + 1 + 1) / 6)  # six cells
    assert summary[2] == pytest.approx(1 / 11)  # the wrong_format share
    table.render()


def test_screenspot_pro_table_by_hand() -> None:
    scores = [score("correct", ui="text", group="Dev"), score("wrong", ui="icon", group="Dev"),
              score("correct", ui="icon", group="Dev"), score("correct", ui="text", group="CAD"),
              score("wrong_format", ui="text", group="CAD")]
    table = screenspot_pro_table(scores)
    assert table.rows["Dev"]["Text"].accuracy == 1.0
    assert table.rows["Dev"]["Icon"].accuracy == 0.5
    assert table.rows["Dev"]["Avg"].accuracy == pytest.approx(2 / 3)
    assert table.rows["CAD"]["Avg"].accuracy == 0.5
    assert table.rows["Office"]["Avg"].total == 0
    assert table.rows["Overall"]["Text"].accuracy == pytest.approx(2 / 3)
    assert table.rows["Overall"]["Avg"].accuracy == pytest.approx(3 / 5)
    assert table.rows["Overall"]["Avg"].wrong_format == 1
    negatives = table_for("screenspot-pro", scores + [score("correct", ui="text", group="Dev",
                                                            categories=["negative"])])
    assert [t.title for t in negatives] == ["ScreenSpot-Pro", "ScreenSpot-Pro per application",
                                            "ScreenSpot-Pro (negative samples)"]


def test_osworld_g_table_counts_every_category() -> None:
    scores = [score("correct", categories=["text_matching", "layout_understanding"]),
              score("wrong", categories=["layout_understanding"]),
              score("correct", categories=["refusal"]),
              score("wrong_format", categories=["unclassified"])]
    table = osworld_g_table(scores)
    assert table.rows["text_matching"]["Accuracy"].accuracy == 1.0
    assert table.rows["layout_understanding"]["Accuracy"].accuracy == 0.5
    assert table.rows["refusal"]["Accuracy"].accuracy == 1.0
    assert table.rows["element_recognition"]["Accuracy"].total == 0
    assert table.rows["unclassified"]["Accuracy"].total == 1
    assert table.rows["Overall"]["Accuracy"].accuracy == 0.5  # refusals included
