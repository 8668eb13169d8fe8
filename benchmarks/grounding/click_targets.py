"""`ClickTargets`: an environment wrapper that records which element each click hits.

Gymnasium style (a wrapper, not a loop flag): before a click is executed it asks the page
for the element under the pointer — the nearest interactive ancestor (link, button,
field, [role=button], [onclick]) of `document.elementFromPoint`, else that element — and
the observation returned by `step` carries it as `info["click_target"]`: its box in
input-space pixels (CSS px), tag, role, visible text and accessible name, described by the
same code that `cua generate-grounding` uses. `cua export grounding RUN` turns these into
grounding samples (trajectories.export_grounding).

Web environments only (anything with a Playwright `page`); on others the wrapper passes
actions through and records nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from actions.contracts import Environment, Task
from actions.models import Action, Click
from actions.observation import Observation
from benchmarks.grounding.generate import DESCRIBE_ELEMENT_JS

logger = logging.getLogger(__name__)

__all__ = ["CLICK_TARGET_JS", "ClickTargetSuite", "ClickTargets"]

CLICK_TARGET_JS = """([x, y]) => {""" + DESCRIBE_ELEMENT_JS + """
  const hit = document.elementFromPoint(x, y);
  if (!hit) return null;
  let el = hit;
  const interactive = 'a, button, input, select, textarea, [role=button], [role=link], [onclick]';
  while (el && !el.matches(interactive)) el = el.parentElement;
  return describe(el || hit);
}"""


class ClickTargets:
    """Wraps an Environment; see the module docstring."""

    def __init__(self, env: Environment):
        self.env = env

    @property
    def unwrapped(self) -> Any:
        return getattr(self.env, "unwrapped", self.env)

    def __getattr__(self, name: str) -> Any:  # page, screen_size, ... of the wrapped env
        if name == "env" or name.startswith("__"):
            raise AttributeError(name)  # during unpickling, before env is set
        return getattr(self.env, name)

    def _target(self, action: Action) -> dict[str, Any] | None:
        page = getattr(self.unwrapped, "page", None)
        if page is None or not isinstance(action, Click):
            return None
        try:
            return page.evaluate(CLICK_TARGET_JS, [action.x, action.y])
        except Exception as exc:  # noqa: BLE001 - recording is best effort, the click is not
            logger.debug("click target not read: %s", exc)
            return None

    def reset(self, task: Task) -> Observation:
        return self.env.reset(task)

    def step(self, action: Action) -> Observation:
        target = self._target(action)
        observation = self.env.step(action)
        if target is None:
            return observation
        return observation.model_copy(update={"info": {**observation.info,
                                                       "click_target": target}})

    def evaluate(self) -> float:
        return self.env.evaluate()

    def close(self) -> None:
        self.env.close()


@dataclass(frozen=True)
class ClickTargetSuite:
    """A suite whose environments are wrapped in ClickTargets (picklable for workers);
    its scripted expert still acts on the unwrapped environment."""

    suite: Any

    def __getattr__(self, name: str) -> Any:
        if name == "suite" or name.startswith("__"):
            raise AttributeError(name)  # during unpickling, before suite is set
        return getattr(self.suite, name)

    def make_environment(self, **options: Any) -> ClickTargets:
        return ClickTargets(self.suite.make_environment(**options))

    def make_expert(self, env: Any) -> Any:
        return self.suite.make_expert(getattr(env, "unwrapped", env))
