"""A human in the loop (`cua run --confirm` / `--confirm-sensitive`, Ctrl-C to pause).

`HumanInTheLoop` wraps an Environment (gymnasium style: a wrapper, not a loop flag).
Before an action that needs confirmation runs, it shows the action in words, where it
points on the screen, and (with `snapshot_dir`) a copy of the current screenshot with
that point marked; then it reads one answer from its input (stdin for `cua run`):

- ``a`` / ``approve`` / ``y``: run the action;
- ``s`` / ``skip`` / ``n``: do not run it; the policy gets a refusal as the action's error
  ("the user refused this action"), as the safety layer's refusals are fed back;
- ``e`` / ``edit`` (``type`` actions): the next line is the text to type instead;
- ``q`` / ``stop``: end the episode here (the environment reports it done).

End of input counts as ``stop``. Ctrl-C (`request_pause`, installed by `cua run`) pauses
before the next action: the user can act on the device by hand, then answers ``r`` /
``resume`` (the screen is observed again and the policy is told the user acted; the
action proposed before the pause is not run) or ``e`` / ``end``. A second Ctrl-C while a
pause is pending stops the run as Ctrl-C always did.

Every intervention is recorded in the observation the step returns
(``info["intervention"] = {"kind": ..., ...}``), which the step record keeps.

Which actions are *sensitive* (`--confirm-sensitive`; `sensitive_reason`): typing into a
password field, navigating to another host, opening an app, and key combinations that
close or delete (Alt+F4, Ctrl+W, Ctrl+Q, Delete, ...).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

from actions.contracts import Environment, Task
from actions.models import Action, Key, Navigate, OpenApp, Type, Wait
from actions.observation import Observation
from actions.words import action_in_words

logger = logging.getLogger(__name__)

ConfirmMode = Literal["all", "sensitive", "none"]

USER_REFUSAL = "the user refused this action"
USER_ACTED = ("the user paused the episode and acted by hand; the action you proposed "
              "before the pause was not run. Look at the current screen again.")

# Key combinations that close a window or tab, quit an app, or delete.
_CLOSING_KEYS = frozenset({"w", "q", "f4"})
_DELETING_KEYS = frozenset({"delete"})
_MODIFIERS = frozenset({"ctrl", "alt", "meta", "shift"})


def _host(url: str | None) -> str:
    return (urlsplit(url).hostname or "") if url else ""


def sensitive_reason(action: Action, *, current_url: str | None,
                     focused_password: bool | None) -> str | None:
    """Why `action` needs the user's confirmation under --confirm-sensitive, or None."""
    if isinstance(action, Type) and focused_password:
        return "types into a password field"
    if isinstance(action, Navigate):
        target = action.url if "://" in action.url else "https://" + action.url
        if _host(target) != _host(current_url):
            return f"navigates to another site ({_host(target) or action.url})"
    if isinstance(action, OpenApp):
        return f"opens the app {action.name!r}"
    if isinstance(action, Key):
        keys = {k.lower() for k in action.keys}
        if keys & _DELETING_KEYS:
            return "presses a delete key"
        if keys & _MODIFIERS and keys & _CLOSING_KEYS:
            return "presses a key combination that closes or quits (" + "+".join(action.keys) + ")"
    return None


def _point_of(action: Action) -> tuple[int, int] | None:
    for xs, ys in (("x", "y"), ("end_x", "end_y")):
        x, y = getattr(action, xs, None), getattr(action, ys, None)
        if x is not None and y is not None:
            return int(x), int(y)
    return None


class HumanInTheLoop:
    """See the module docstring. `input` / `output`: where answers come from and prompts go.
    `snapshot_dir`: where to write the screenshot with the action's point marked."""

    def __init__(self, env: Environment, mode: ConfirmMode = "all", *,
                 input: TextIO | None = None, output: TextIO | None = None,  # noqa: A002
                 snapshot_dir: Path | None = None) -> None:
        self.env = env
        self.mode = mode
        self.input = input or sys.stdin
        self.output = output or sys.stderr
        self.snapshot_dir = snapshot_dir
        self._pause = threading.Event()
        self._last: Observation | None = None
        self._asked = 0

    @property
    def unwrapped(self) -> Any:
        return getattr(self.env, "unwrapped", self.env)

    def __getattr__(self, name: str) -> Any:
        if name in ("env", "mode", "input", "output", "snapshot_dir", "_pause", "_last",
                    "_asked"):
            raise AttributeError(name)
        return getattr(self.env, name)

    # -- Ctrl-C

    def request_pause(self) -> None:
        """Pause before the next action (a SIGINT handler calls this). A second request
        while one is pending raises KeyboardInterrupt: the run stops, as Ctrl-C did."""
        if self._pause.is_set():
            raise KeyboardInterrupt
        self._pause.set()
        self._say("\n[paused: the episode stops before its next action]")

    # -- Environment

    def reset(self, task: Task) -> Observation:
        self._pause.clear()
        self._last = self.env.reset(task)
        return self._last

    def step(self, action: Action) -> Observation:
        if self._pause.is_set():
            return self._keep(self._paused(action))
        reason = self._confirmation_reason(action)
        if reason is None:
            return self._keep(self.env.step(action))
        answer = self._ask(action, reason)
        if answer == "approve":
            return self._keep(self._with(self.env.step(action), kind="approve", reason=reason))
        if answer == "skip":
            return self._keep(self._unchanged(action_error=USER_REFUSAL, kind="skip",
                                              reason=reason))
        if answer == "stop":
            return self._keep(self._unchanged(done=True, kind="stop", reason=reason))
        assert isinstance(action, Type) and isinstance(answer, tuple)
        edited = Type(text=answer[1])
        return self._keep(self._with(self.env.step(edited), kind="edit", reason=reason,
                                     original=action.text, text=edited.text))

    def evaluate(self) -> float:
        return self.env.evaluate()

    def close(self) -> None:
        self.env.close()

    # -- helpers

    def _keep(self, obs: Observation) -> Observation:
        self._last = obs
        return obs

    def _confirmation_reason(self, action: Action) -> str | None:
        if self.mode == "all":
            return "--confirm asks before every action"
        if self.mode == "sensitive":
            password = None
            if isinstance(action, Type):
                from agent.safety import focused_element, is_password_field

                password = is_password_field(focused_element(self.unwrapped))
            return sensitive_reason(action, focused_password=password,
                                    current_url=self._last.url if self._last else None)
        return None

    def _with(self, obs: Observation, **intervention: Any) -> Observation:
        return obs.model_copy(update={"info": {**obs.info, "intervention": intervention}})

    def _unchanged(self, *, action_error: str | None = None, done: bool = False,
                   **intervention: Any) -> Observation:
        if self._last is None:
            raise RuntimeError("call reset(task) before step()")
        return self._last.model_copy(update={
            "action_error": action_error, "done": done, "execute_s": 0.0, "settle_s": 0.0,
            "timestamp": time.time(), "instruction": None,
            "info": {**self._last.info, "intervention": intervention}})

    def _say(self, text: str) -> None:
        self.output.write(text + "\n")
        self.output.flush()

    def _read(self, prompt: str) -> str | None:
        self.output.write(prompt)
        self.output.flush()
        line = self.input.readline()
        return None if not line else line.rstrip("\n")

    def _ask(self, action: Action, reason: str) -> str | tuple[str, str]:
        self._asked += 1
        where = _point_of(action)
        screen = (self._last.url or self._last.app) if self._last is not None else None
        self._say(f"\nthe agent wants to: {action_in_words(action)}  ({reason})")
        if where is not None and self._last is not None:
            size = self._last.screen_size
            self._say(f"  at ({where[0]}, {where[1]}) of the {size.width}x{size.height} screen"
                      + (f" — {screen}" if screen else ""))
        snapshot = self._snapshot(action)
        if snapshot is not None:
            self._say(f"  screenshot with the point marked: {snapshot}")
        choices = "[a]pprove, [s]kip, " + ("[e]dit text, " if isinstance(action, Type) else "") \
            + "[q] stop"
        while True:
            answer = self._read(f"{choices}? ")
            if answer is None:
                self._say("(no more input: stopping the episode)")
                return "stop"
            word = answer.strip().lower()
            if word in ("a", "approve", "y", "yes"):
                return "approve"
            if word in ("s", "skip", "n", "no"):
                return "skip"
            if word in ("q", "stop", "quit"):
                return "stop"
            if word in ("e", "edit") and isinstance(action, Type):
                text = self._read("text to type instead: ")
                if text is None:
                    self._say("(no more input: stopping the episode)")
                    return "stop"
                if text:
                    return ("edit", text)
                self._say("(empty text: answer again)")
                continue
            self._say(f"(not an answer: {answer!r}; type one of {choices})")

    def _paused(self, action: Action) -> Observation:
        self._say(f"\npaused before: {action_in_words(action)}. Act on the screen by hand "
                  "if you like, then answer.")
        while True:
            answer = self._read("[r]esume or [e]nd the episode? ")
            word = None if answer is None else answer.strip().lower()
            if word is None or word in ("e", "end", "q", "stop"):
                self._pause.clear()
                return self._unchanged(done=True, kind="end", proposed=action_in_words(action))
            if word in ("r", "resume", "c", "continue"):
                self._pause.clear()
                fresh = self.env.step(Wait(seconds=0))  # observe the screen the user left
                return self._with(fresh.model_copy(update={"action_error": USER_ACTED}),
                                  kind="resume", proposed=action_in_words(action))
            self._say(f"(not an answer: {answer!r})")

    def _snapshot(self, action: Action) -> Path | None:
        """The current screenshot with the action's point circled, or None."""
        where = _point_of(action)
        if self.snapshot_dir is None or self._last is None:
            return None
        import io

        from PIL import Image, ImageDraw

        image = Image.open(io.BytesIO(self._last.screenshot_png)).convert("RGB")
        if where is not None:
            scale_x = image.width / self._last.screen_size.width
            scale_y = image.height / self._last.screen_size.height
            x, y = where[0] * scale_x, where[1] * scale_y
            radius = max(8, min(image.size) // 30)
            draw = ImageDraw.Draw(image)
            for width, colour in ((5, "white"), (3, "red")):
                draw.ellipse((x - radius, y - radius, x + radius, y + radius),
                             outline=colour, width=width)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.snapshot_dir / f"confirm-{self._asked:03d}.png"
        image.save(path)
        return path


__all__ = ["USER_ACTED", "USER_REFUSAL", "ConfirmMode", "HumanInTheLoop", "sensitive_reason"]
