"""The safety layer: refused actions are recorded as action errors and not executed;
secrets never reach the run directory; the CLI flags."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest_engine import run_episode
from conftest_loop import CLICK, TERMINATE, ScriptedEnv, ScriptedPolicy, out
from conftest_workers import WorkerSuite
from rich.console import Console
from typer.testing import CliRunner

from actions.contracts import PolicyOutput, Task
from actions.models import Click, Key, Navigate, OpenApp, Terminate, Type
from agent.config import RunConfig
from agent.runner import run_suite
from agent.safety import (
    REFUSAL_PREFIX,
    RedactingRecorder,
    Redactor,
    SafeEnvironment,
    SafetyRules,
    SecretMissing,
    apply_safety,
    entered_text,
    is_paste,
    rules_from_cli,
)
from trajectories.store import RunDir, RunWriter

SECRET = "s3cr3t-Pa55-word"


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=150)


def _all_bytes(run: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file())


def test_rules_name_the_rule_that_refuses():
    rules = SafetyRules(refused_actions=["drag"], allowed_domains=["example.org"],
                        allowed_apps=["Contacts"])
    assert rules.refusal(Navigate(url="https://docs.example.org/x"), focused_password=None) is None
    assert "outside the allowed domains" in rules.refusal(Navigate(url="evil.com/x"),
                                                          focused_password=None)
    assert rules.refusal(OpenApp(name="contacts"), focused_password=None) is None
    assert "outside the allowed apps" in rules.refusal(OpenApp(name="Bank"),
                                                       focused_password=None)
    assert "password field" in rules.refusal(Type(text="x"), focused_password=True)
    assert rules.refusal(Type(text="x"), focused_password=False) is None
    assert SafetyRules(allow_password_typing=True).refusal(
        Type(text="x"), focused_password=True) is None
    assert rules_from_cli() is None
    with pytest.raises(ValueError, match="unknown action type"):
        rules_from_cli(refuse_action=["teleport"])
    with pytest.raises(ValueError, match="bad secret pattern"):
        SafetyRules(secret_patterns=["("])
    assert SECRET not in str(SafetyRules(secrets=[SECRET]).describe())


@pytest.mark.parametrize(("keys", "entered", "paste"), [
    (("a",), "a", False), (("shift", "a"), "A", False), (("shift", "1"), "!", False),
    (("space",), " ", False), (("5",), "5", False), (("ctrl", "v"), None, True),
    (("meta", "v"), None, True), (("ctrl", "shift", "v"), None, True),
    (("shift", "insert"), None, True), (("enter",), None, False), (("tab",), None, False),
    (("backspace",), None, False), (("ctrl", "a"), None, False), (("ctrl", "c"), None, False),
])
def test_which_keys_enter_text_into_a_password_field(keys, entered, paste):
    """Table of what a key press enters (US layout) and whether the rule refuses it."""
    action = Key(keys=keys)
    assert entered_text(action) == entered and is_paste(action) is paste
    refused = SafetyRules().refusal(action, focused_password=True)
    assert (refused is not None) == (entered is not None or paste)
    if refused:
        assert ("pasting" if paste else "typing") + " into a password field" in refused
    assert SafetyRules().refusal(action, focused_password=False) is None
    assert SafetyRules(allow_password_typing=True).refusal(action, focused_password=True) is None


def test_refused_action_is_not_executed_and_recorded_as_action_error(tmp_path):
    env = ScriptedEnv()
    safe = SafeEnvironment(env, SafetyRules(refused_actions=["click"]))
    writer = RunWriter(tmp_path / "run", {"t": 1})
    task = Task(suite="unit", task_id="t", instruction="go", max_steps=2)
    result = run_episode(safe, ScriptedPolicy([out(CLICK), out(TERMINATE)]), task,
                         recorder=writer.start_episode("e"), episode_id="e")
    assert [a.type for a in env.executed] == ["terminate"]  # the click never ran
    assert result.action_errors == 1 and result.terminated_by == "terminate"
    step = RunDir(tmp_path / "run").steps("e")[0]
    observation = step.executions[0].observation
    assert observation.action_error.startswith(f"{REFUSAL_PREFIX}: click actions are not")
    assert observation.info["safety_refusal"] == "click actions are not allowed"
    assert "failed: refused by the safety policy" in step.feedback


def test_redactor_replaces_values_and_patterns_but_not_hashes():
    redactor = Redactor([SECRET], [r"sk-[A-Za-z0-9]{8,}"], "[X]")
    data = {"text": f"pw {SECRET} key sk-abcdefgh12", "screenshot_sha256": "sk-abcdefgh12",
            "nested": [SECRET, 3, None]}
    assert redactor.data(data) == {"text": "pw [X] key [X]",
                                   "screenshot_sha256": "sk-abcdefgh12",
                                   "nested": ["[X]", 3, None]}


class _TypesTheSecret(ScriptedPolicy):
    """Types the secret (and says it, with token ids) at its first step, then clicks."""

    def act(self, states):
        self.batches.append(list(states))
        outputs = []
        for state in states:
            if state.step_index == 0:
                outputs.append(PolicyOutput(
                    raw_text=f'type "{SECRET}" and sk-abcdefgh12345', thought=f"use {SECRET}",
                    actions=[Type(text=SECRET)], response_token_ids=[1, 2, 3],
                    response_logprobs=[-0.1, -0.2, -0.3], prompt_token_ids=[4, 5]))
            else:
                outputs.append(out(CLICK))
        return outputs


@pytest.mark.parametrize("workers", [0, 2])
def test_secrets_never_reach_the_run_directory(tmp_path, monkeypatch, workers):
    monkeypatch.setenv("CUA_TEST_SECRET", SECRET)
    rules = SafetyRules(secret_env=["CUA_TEST_SECRET"], secret_patterns=[r"sk-[a-z0-9]{8,}"])
    run = tmp_path / "run"
    summary = run_suite(RunConfig(
        suite="unit", policy="scripted", tasks=["long-3"], episodes_per_task=2, seed=0,
        safety=rules, engine={"workers": workers}, output={"out_dir": run},
    ), suite=WorkerSuite(), policy=_TypesTheSecret([]), console=_quiet())
    assert summary.complete and all(r.success for r in summary.results)
    data = _all_bytes(run)
    assert SECRET.encode() not in data and b"sk-abcdefgh" not in data
    reader = RunDir(run)
    first = reader.steps(summary.results[0].episode_id)[0]
    assert first.output.actions == [Type(text="[REDACTED]")]
    assert first.output.raw_text == 'type "[REDACTED]" and [REDACTED]'
    assert first.output.response_token_ids is None and first.output.prompt_token_ids is None
    assert reader.manifest().config["safety"]["secret_env"] == ["CUA_TEST_SECRET"]


def _keys_for(text: str) -> list[Key]:
    """One key press per character (US layout; uppercase letters with shift)."""
    return [Key(keys=("shift", c.lower())) if c.isupper() else Key(keys=(c,)) for c in text]


def _entered_on_disk(run: Path, episode_id: str) -> str:
    """The text the recorded actions entered, in order ('\\n' where an action entered none)."""
    return "".join(entered_text(action) or "\n" for step in RunDir(run).steps(episode_id)
                   for action in step.output.actions)


class _ReplaysHistory(ScriptedPolicy):
    """A scripted policy whose prompt replays every earlier raw text (as chat templates do)."""

    def act(self, states):
        outputs = super().act(states)
        return [output.model_copy(update={"messages": [
            {"role": "assistant", "content": h.output.raw_text} for h in state.history]})
            for state, output in zip(states, outputs, strict=True)]


def _typing_episode(run: Path, secrets: list[str]) -> list[PolicyOutput]:
    """Click; `type` the secret's first 3 characters; key presses for the rest; then keys
    that start the secret again and diverge ('s', '3', 'x'); click; terminate."""
    actions = [CLICK, Type(text=SECRET[:3]), *_keys_for(SECRET[3:]), *_keys_for("s3x"), CLICK,
               TERMINATE]
    script = [PolicyOutput(raw_text=f"<tool_call>step {i}: {a!r}</tool_call>",
                           thought=f"thinking {i}", actions=[a], response_token_ids=[i])
              for i, a in enumerate(actions)]
    writer = RunWriter(run, {"t": 1})
    recorder = RedactingRecorder(writer.start_episode("e"), Redactor(secrets, [], "[REDACTED]"))
    task = Task(suite="unit", task_id="t", instruction="log in", max_steps=len(script) + 1)
    result = run_episode(ScriptedEnv(), _ReplaysHistory(script), task, episode_id="e",
                         recorder=recorder)
    assert result.steps == len(script) and result.terminated_by == "terminate"
    return script


def test_a_secret_typed_key_by_key_is_redacted(tmp_path):
    """Plumbing: partly typed, partly pressed; the control run (another secret configured)
    keeps it, so the assertion can fail."""
    control = tmp_path / "control"
    _typing_episode(control, ["another-secret"])
    assert SECRET in _entered_on_disk(control, "e")
    assert b"thinking 5" in _all_bytes(control)

    run = tmp_path / "run"
    script = _typing_episode(run, [SECRET])
    entered = _entered_on_disk(run, "e")
    assert SECRET.casefold() not in entered.casefold()
    assert entered == "\n" + "[REDACTED]" * (len(SECRET) - 2) + "s3x\n\n"  # divergence kept
    steps = RunDir(run).steps("e")
    assert [s.index for s in steps] == list(range(len(script)))  # held back, none lost
    for step in steps[1:len(SECRET) - 1]:
        assert step.output.actions == [Type(text="[REDACTED]")]
        assert step.executions[0].action == Type(text="[REDACTED]")
        assert step.output.raw_text == "[REDACTED]" and step.output.thought == "[REDACTED]"
        assert step.output.response_token_ids is None
    data = _all_bytes(run)
    for index in range(1, len(SECRET) - 1):  # nor do later prompts replay those steps
        assert script[index].raw_text.encode() not in data
        assert f"thinking {index}\"".encode() not in data
    assert steps[-1].output.messages[0]["content"] == script[0].raw_text
    assert steps[-1].output.messages[5]["content"] == "[REDACTED]"
    assert steps[0].output.response_token_ids == [0]  # a step before the secret keeps its ids


def test_missing_secret_variable_fails_before_the_run(tmp_path, monkeypatch):
    monkeypatch.delenv("CUA_TEST_UNSET", raising=False)
    writer = RunWriter(tmp_path / "run", {"t": 1})
    with pytest.raises(SecretMissing, match="CUA_TEST_UNSET"):
        apply_safety(SafetyRules(secret_env=["CUA_TEST_UNSET"]), writer, ScriptedEnv, None)


# --------------------------------------------------------------------------- Chromium

LOGIN_PAGE = "data:text/html," + quote(
    "<body style='margin:0'>"
    "<input id=user style='position:absolute;left:10px;top:10px;width:150px;height:30px'>"
    "<input id=pass type=password "
    "style='position:absolute;left:10px;top:60px;width:150px;height:30px'></body>")


def _web_episode(tmp_path: Path, rules: SafetyRules, url: str, script: list[PolicyOutput],
                 read: str = "() => [user.value, pass.value]", *, frames: bool = False):
    """Run `script` on `url` in Chromium with `rules`; returns (result, what `read`
    evaluates to after the episode (in every frame when `frames`), recorded steps)."""
    from environments.web import WebConfig, WebEnvironment

    writer, make_env, _ = apply_safety(
        rules, RunWriter(tmp_path / "run", {"t": 1}),
        lambda: WebEnvironment(WebConfig(viewport={"width": 320, "height": 200})), None)
    env = make_env()
    try:
        task = Task(suite="web", task_id="login", config={"url": url},
                    max_steps=len(script) + 1)
        result = run_episode(env, ScriptedPolicy(script), task, episode_id="e",
                             recorder=writer.start_episode("e"))
        values = ([frame.evaluate(read) for frame in env.page.frames[1:]] if frames
                  else env.page.evaluate(read))
    finally:
        env.close()
    return result, values, RunDir(tmp_path / "run").steps("e")


def _login_episode(tmp_path: Path, rules: SafetyRules):
    script = [out(Click(x=80, y=25)), out(Type(text="alice")), out(Click(x=80, y=75)),
              out(Type(text=SECRET)), out(Terminate(status="success"))]
    return _web_episode(tmp_path, rules, LOGIN_PAGE, script)


@pytest.mark.slow
def test_typing_into_a_password_field_is_refused_on_chromium(tmp_path):
    result, values, steps = _login_episode(tmp_path, SafetyRules())
    assert values == ["alice", ""]
    assert result.action_errors == 1
    after_click = steps[2].executions[0].observation
    assert after_click.info["focused_password"] is True
    assert steps[0].executions[0].observation.info["focused_password"] is False
    assert "typing into a password field" in steps[3].executions[0].observation.action_error


@pytest.mark.slow
def test_permitted_password_typing_is_redacted_on_disk(tmp_path):
    result, values, _ = _login_episode(
        tmp_path, SafetyRules(allow_password_typing=True, secrets=[SECRET]))
    assert values == ["alice", SECRET] and result.action_errors == 0
    assert SECRET.encode() not in _all_bytes(tmp_path / "run")


# copy "alice" from the user field, then into the password field: key presses that type,
# both paste shortcuts, and a tab (which only moves the focus)
_KEYS_AND_PASTES = [Click(x=80, y=25), Type(text="alice"), Key(keys=("ctrl", "a")),
                    Key(keys=("ctrl", "c")), Click(x=80, y=75), Key(keys=("a",)),
                    Key(keys=("shift", "b")), Key(keys=("space",)), Key(keys=("ctrl", "v")),
                    Key(keys=("shift", "insert")), Key(keys=("tab",)), TERMINATE]
_REFUSED_STEPS = [5, 6, 7, 8, 9]


@pytest.mark.slow
@pytest.mark.parametrize("allowed", [True, False])
def test_keys_and_pastes_into_a_password_field_are_refused_on_chromium(tmp_path, allowed):
    """With typing allowed (the control) the same keys fill the field, so the refusals
    are what keeps it empty."""
    result, values, steps = _web_episode(tmp_path, SafetyRules(allow_password_typing=allowed),
                                         LOGIN_PAGE, [out(a) for a in _KEYS_AND_PASTES])
    if allowed:
        assert values == ["alice", "aB alicealice"] and result.action_errors == 0
        return
    assert values == ["alice", ""] and result.action_errors == len(_REFUSED_STEPS)
    errors = {s.index: s.executions[0].observation.action_error for s in steps}
    assert [i for i, e in errors.items() if e] == _REFUSED_STEPS
    assert "typing into a password field" in errors[5]
    assert "pasting into a password field" in errors[8] and "pasting" in errors[9]


_FIELD = "position:absolute;left:10px;width:150px;height:30px"
_FRAME_BODY = (f"<body style='margin:0'><input id=text style='{_FIELD};top:10px'>"
               f"<input id=pass type=password style='{_FIELD};top:50px'></body>")
_FRAME = "position:absolute;left:0;width:320px;height:95px;border:0"
# the same form twice: in a same-origin (srcdoc) iframe and a cross-origin (data:) one
FRAMED_LOGIN_PAGE = "data:text/html," + quote(
    "<body style='margin:0'>"
    f"<iframe srcdoc=\"{_FRAME_BODY}\" style='{_FRAME};top:0'></iframe>"
    f"<iframe src=\"data:text/html,{quote(_FRAME_BODY)}\" style='{_FRAME};top:100px'>"
    "</iframe></body>")


@pytest.mark.slow
def test_password_fields_inside_iframes_are_detected_on_chromium(tmp_path):
    script = [out(a) for a in (
        Click(x=80, y=25), Type(text="one"), Click(x=80, y=65), Type(text="x"),
        Click(x=80, y=125), Type(text="two"), Click(x=80, y=165), Key(keys=("y",)),
        TERMINATE)]
    result, values, steps = _web_episode(tmp_path, SafetyRules(), FRAMED_LOGIN_PAGE, script,
                                         "() => [text.value, pass.value]", frames=True)
    assert sorted(values) == [["one", ""], ["two", ""]]
    focused = [s.executions[0].observation.info["focused_password"] for s in steps[:-1]]
    assert focused == [False, False, True, True, False, False, True, True]
    assert [s.index for s in steps if s.executions[0].observation.action_error] == [3, 7]


@pytest.mark.slow
@pytest.mark.parametrize("redacted", [True, False])
def test_a_secret_typed_key_by_key_is_redacted_on_chromium(tmp_path, redacted):
    """Chromium types the secret from key presses (the page gets it), yet the run directory
    does not spell it; the control (no secret configured) does."""
    script = [out(a) for a in (Click(x=80, y=75), *_keys_for(SECRET), TERMINATE)]
    rules = SafetyRules(allow_password_typing=True, secrets=[SECRET] if redacted else [])
    result, values, _ = _web_episode(tmp_path, rules, LOGIN_PAGE, script)
    assert values == ["", SECRET] and result.action_errors == 0
    entered = _entered_on_disk(tmp_path / "run", "e")
    assert (SECRET in entered) is not redacted


# --------------------------------------------------------------------------- CLI


def test_cli_safety_flags_refuse_and_record_the_rules(tmp_path, monkeypatch):
    """The secret is the task's instruction and the pattern matches the policy's raw text,
    so both would be on disk: the control run (no flags) shows they are."""
    from agent.cli.main import app
    from benchmarks import base as suite_registry

    monkeypatch.setitem(suite_registry._SUITES, "unit-workers", "conftest_workers:WorkerSuite")
    monkeypatch.setenv("CUA_TEST_SECRET", "do a")  # WorkerSuite's instruction for task 'a'
    recorded = [b"do a", b"x=10, y=20"]  # the instruction; the scripted click's raw text

    def evaluate(run: Path, *flags: str):
        return CliRunner().invoke(app, ["eval", "unit-workers", "--tasks", "a", "--out",
                                        str(run), "--max-steps", "2", *flags])

    done = evaluate(tmp_path / "control")
    assert done.exit_code == 0, done.output
    assert all(value in _all_bytes(tmp_path / "control") for value in recorded)

    run = tmp_path / "run"
    done = evaluate(run, "--refuse-action", "click", "--secret-env", "CUA_TEST_SECRET",
                    "--redact-pattern", r"x=\d+, y=\d+")
    assert done.exit_code == 0, done.output
    [result] = RunDir(run).results()
    assert result.action_errors == 2 and result.terminated_by == "max_steps"
    assert RunDir(run).manifest().config["safety"]["refused_actions"] == ["click"]
    assert not any(value in _all_bytes(run) for value in recorded)
    bad = CliRunner().invoke(app, ["eval", "unit-workers", "--out", str(tmp_path / "x"),
                                   "--refuse-action", "teleport"])
    assert bad.exit_code == 2 and "unknown action type" in bad.output
