"""GUI-Owl coordinates: the 0..1000 grid mapped through the smart-resized size, as its
desktop runner does.

Reference facts: X-PLUG/MobileAgent Mobile-Agent-v3.5/computer_use/run_gui_owl_1_5_for_pc.py
@ 47de8588c56b7e1058f9af42a78ec9b30cbeb3e8:
    resized_height, resized_width = smart_resize(dummy_image.height, dummy_image.width,
        factor=16, min_pixels=3136, max_pixels=1003520 * 200)
    rescale_coordinates: action_parameter[key][0] = int(action_parameter[key][0] / 1000 * resized_width)
                         action_parameter[key][1] = int(action_parameter[key][1] / 1000 * resized_height)
and the rescaled values are executed as screen pixels (computer_tools.left_click(x, y)),
not mapped back to the screenshot's size. smart_resize is Qwen's (round each side to the
factor, then bound the area); actions.dialects.smart_resize is the same algorithm.
"""

from __future__ import annotations

import pytest

from actions.dialects import smart_resize
from actions.observation import Size
from policies.prompting import PromptConfig, build_prompt
from tests.conftest_policy import episode_state, observation


def reference_pixel(grid: tuple[int, int], screen: tuple[int, int]) -> tuple[int, int]:
    height, width = smart_resize(screen[1], screen[0], 16, 3136, 1003520 * 200)
    return int(grid[0] / 1000 * width), int(grid[1] / 1000 * height)


@pytest.mark.parametrize("screen", [(1920, 1080), (1366, 768), (1280, 800), (2560, 1440)])
def test_gui_owl_maps_the_grid_through_its_resized_size(screen: tuple[int, int]) -> None:
    size = Size(width=screen[0], height=screen[1])
    state = episode_state().model_copy(update={"observation": observation(20, size)})
    converter = build_prompt(state, PromptConfig.for_profile("gui-owl")).converter
    for grid in [(500, 500), (0, 0), (123, 877), (999, 999), (250, 750)]:
        expected = reference_pixel(grid, screen)
        x, y, _ = converter.to_screen(*grid)
        # the reference can point past the screen's edge (1088 rows on a 1080 screen);
        # the pixel it names is clamped onto the screen here
        assert (x, y) == (min(expected[0], screen[0] - 1), min(expected[1], screen[1] - 1))
    if screen == (1920, 1080):
        assert converter.to_screen(500, 500)[:2] == (960, 544)  # not 540
