"""The grounding metric: is one predicted point inside the target region?

Rules, as the reference evaluators apply them (facts in tests/test_grounding_metric.py):

- box: x1 <= x <= x2 and y1 <= y <= y2 — edges included (SeeClick `screenspot_test.py`,
  ScreenSpot-Pro `eval_sample_positive_gt`, OSWorld-G `_is_point_in_rectangle`);
- polygon: the even-odd crossing test of OSWorld-G's `_is_point_in_polygon` (a point on
  an edge counts as the crossing test decides: left/top edges tend to be inside, right/
  bottom edges outside);
- refusal (OSWorld-G `refusal` items, ScreenSpot-Pro negative samples): correct only when
  the model refuses (a negative point);
- an answer without a readable point is "wrong_format": it counts as wrong and stays in
  the denominator (ScreenSpot-Pro `calc_metric_for_result_list`), and is counted apart;
- the ScreenSpot family compares in fractions of the image, as ScreenSpot-Pro's
  `eval_sample_positive_gt` does (box / img_size against the model's point / its grid),
  so that an answer exactly on an edge is inside there as here (in pixels,
  175 / 1000 * 2880 is 503.99999999999994, left of an edge at 504).
"""

from __future__ import annotations

from typing import Literal

from benchmarks.grounding.data import Region

Outcome = Literal["correct", "wrong", "wrong_format"]

__all__ = ["Outcome", "inside_point", "judge", "point_in_box", "point_in_box_fractions",
           "point_in_polygon"]


def point_in_box(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    """Inside the box [x1, y1, x2, y2], edges included."""
    x, y = point
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def point_in_polygon(point: tuple[float, float],
                     polygon: tuple[tuple[float, float], ...]) -> bool:
    """The even-odd rule with OSWorld-G's crossing test (a horizontal ray to the right)."""
    x, y = point
    inside = False
    previous = polygon[-1]
    for current in polygon:
        (xi, yi), (xj, yj) = current, previous
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        previous = current
    return inside


def point_in_box_fractions(point_frac: tuple[float, float],
                           box: tuple[float, float, float, float],
                           image_size: tuple[int, int]) -> bool:
    """ScreenSpot-Pro's test: the box divided by img_size, edges included."""
    width, height = image_size
    frac_box = (box[0] / width, box[1] / height, box[2] / width, box[3] / height)
    return point_in_box(point_frac, frac_box)


def judge(region: Region, point_px: tuple[float, float] | None, refused: bool,
          point_frac: tuple[float, float] | None = None,
          image_size: tuple[int, int] | None = None) -> Outcome:
    """The outcome of one answer: `point_px` the predicted point in image pixels (None if
    none could be read), `refused` whether the model declined. With `point_frac` and
    `image_size` a box is tested in fractions of the image (the ScreenSpot family)."""
    if point_px is None and not refused:
        return "wrong_format"
    if region.kind == "refusal":
        return "correct" if refused else "wrong"
    if refused or point_px is None:
        return "wrong"
    if region.kind == "polygon" and region.polygon is not None:
        return "correct" if point_in_polygon(point_px, region.polygon) else "wrong"
    assert region.box is not None
    if point_frac is not None and image_size is not None:
        inside = point_in_box_fractions(point_frac, region.box, image_size)
        return "correct" if inside else "wrong"
    return "correct" if point_in_box(point_px, region.box) else "wrong"


def inside_point(region: Region) -> tuple[float, float] | None:
    """A point inside `region`: the box centre, or for a polygon the first inside point
    of a grid over its bounds (the centre of a concave polygon may lie outside it)."""
    centre = region.centre()
    if region.kind != "polygon" or region.polygon is None or centre is None:
        return centre
    if point_in_polygon(centre, region.polygon):
        return centre
    x1, y1, x2, y2 = region.box  # type: ignore[misc]
    steps = 64
    for i in range(1, steps):
        for j in range(1, steps):
            point = (x1 + (x2 - x1) * i / steps, y1 + (y2 - y1) * j / steps)
            if point_in_polygon(point, region.polygon):
                return point
    return centre
