"""Test double of the OSWorld package `desktop_env` (1.0.2's DesktopEnv API).

The real package cannot be installed beside qwen-cua (it pins torch 2.5 and
transformers 4.35) and needs a VM. This double keeps its public surface and semantics:
`DesktopEnv(provider_name, path_to_vm, action_space, screen_size, headless,
require_a11y_tree, ...)`, `reset(task_config) -> obs dict`, `step(action, pause) ->
(obs, reward, done, info)` executing `pyautogui` code strings or `computer_13` dicts,
WAIT/DONE/FAIL, `controller.get_screenshot()` (None when it fails),
`controller.start_recording()/end_recording(path)` (a marker file, not a video),
`evaluate()` (infeasible = last FAIL), `close()`. Its "VM" is a qwen-cua DesktopEnv on a fresh Xvfb.
"""
