"""OSWorld runner parity, part two: task list, resume, report, provider settings.

Reference facts:
- run_multienv_qwen3vl.py (karakuri-ai/OSWorld-JP @ d936d4e64cc3d3ce50f0b6c179f5f8aaaeee9c5d):
  `--test_all_meta_path` default "evaluation_examples/test_nogdrive.json"; `--region`
  default "us-east-1"; DesktopEnv(region=REGION, snapshot_name=snapshot_name,
  enable_proxy=True, client_password=args.client_password, ...) where snapshot_name is
  "init_state", on aws `IMAGE_ID_MAP[REGION].get(screen_size,
  IMAGE_ID_MAP[REGION][(1920, 1080)])`; `get_unfinished` deletes the files of every
  example folder without result.txt and runs it again, on every invocation.
- show_result.py (upstream OSWorld as kept in MeshalNayim/osworld-gui-agent @
  2e1d0316e1e4345a9c62052bcf90a27efe734c26): `target_dir = os.path.join(result_dir,
  action_space, observation_type, use_model)`; per domain, the examples with result.txt,
  `float(result)` else `float(eval(result))`; "Success Rate" = sum / count * 100 per
  domain and over all of them; examples without result.txt are not counted.
- desktop-env 1.0.2 desktop_env/providers/aws/manager.py: raises EnvironmentError at
  import unless AWS_REGION, AWS_SUBNET_ID and AWS_SECURITY_GROUP_ID are set; IMAGE_ID_MAP.
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from benchmarks.osworld import (
    DEFAULT_TEST_FILE,
    OSWorldUnavailable,
    check_aws_settings,
)
from benchmarks.osworld_report import MultipleRuns, domain_summary
from tests.conftest_real_osworld import loopback_vm, real_desktop_env  # noqa: F401


def show_result(result_dir: Path, action_space: str, observation_type: str,
                model: str) -> tuple[dict[str, float], float]:
    """show_result.py's figures, rebuilt from its text (see the module docstring)."""
    target = result_dir / action_space / observation_type / model
    domains: dict[str, list[float]] = {}
    everything: list[float] = []
    for domain in sorted(p for p in target.iterdir() if p.is_dir()):
        for example in sorted(p for p in domain.iterdir() if p.is_dir()):
            if (example / "result.txt").is_file():
                text = (example / "result.txt").read_text()
                try:
                    value = float(text)
                except ValueError:
                    value = float(eval(text))  # noqa: S307 - as the reference does
                domains.setdefault(domain.name, []).append(value)
                everything.append(value)
    return ({d: sum(v) / len(v) * 100 for d, v in domains.items()},
            sum(everything) / len(everything) * 100)


def result_tree(root: Path) -> Path:
    """Two models and two action spaces, as OSWorld's runners leave them."""
    layout = {
        ("pyautogui", "screenshot", "Qwen3-VL-8B"): [("os", "a", "1.0"), ("os", "b", "0.0"),
                                                      ("chrome", "c", "True"),
                                                      ("chrome", "d", None)],
        ("pyautogui", "screenshot", "other"): [("os", "a", "1"), ("os", "b", "1"),
                                                ("chrome", "c", "1")],
        ("computer_13", "screenshot", "Qwen3-VL-8B"): [("os", "a", "1")],
    }
    for (space, observation, model), examples in layout.items():
        for domain, example, score in examples:
            folder = root / space / observation / model / domain / example
            folder.mkdir(parents=True)
            (folder / "traj.jsonl").write_text("{}\n")
            if score is not None:
                (folder / "result.txt").write_text(f"{score}\n")
    return root


def test_report_scores_one_run_as_show_result_does(tmp_path: Path) -> None:
    """Parity: on one <action_space>/<observation>/<model> directory the per-domain and
    overall figures are show_result.py's; on a root holding several runs, one row per
    run and no merged figure."""
    root = result_tree(tmp_path / "results")
    domains, overall = show_result(root, "pyautogui", "screenshot", "Qwen3-VL-8B")
    rows = {r.domain: r for r in domain_summary(root / "pyautogui/screenshot/Qwen3-VL-8B")}
    assert {d: rows[d].success_rate_pct for d in domains} == pytest.approx(domains, abs=0.005)
    assert rows["overall"].success_rate_pct == pytest.approx(overall, abs=0.005)
    assert rows["chrome"].crashed == 1
    with pytest.raises(MultipleRuns):
        domain_summary(root)
    out = CliRunner().invoke(app, ["osworld", "report", str(root)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert out.output.count("Qwen3-VL-8B") == 2 and "other" in out.output
    assert "For a run's per-domain table" in out.output
    merged = 100 * 6 / 7  # every scored example of every run averaged together
    assert f"{merged:.2f}" not in out.output
    assert f"{overall:.2f}" in out.output and "100.00" in out.output


def _checkout(root: Path, test_file: str = DEFAULT_TEST_FILE) -> Path:
    (root / "evaluation_examples" / "examples" / "os").mkdir(parents=True)
    (root / test_file).write_text(json.dumps({"os": ["t1"]}))
    (root / "evaluation_examples" / "examples" / "os" / "t1.json").write_text(json.dumps(
        {"id": "t1", "instruction": "x", "config": [], "evaluator": {"func": "infeasible"}}))
    return root


@pytest.mark.parametrize(("protocol", "retry"), [("official", True), ("fast", False)])
def test_official_resume_reruns_unfinished_and_passes_the_runners_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str, retry: bool) -> None:
    """Parity: under --protocol official every episode without a result (OSWorld: no
    result.txt) runs again on resume, as get_unfinished does; the task list defaults to
    test_nogdrive.json; region, snapshot and proxy reach DesktopEnv as the runner sets
    them."""
    import agent.cli.osworld as cli

    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake_run_suite(config: Any, *, suite: Any, **kwargs: Any) -> None:
        seen.update(config=config, suite=suite)
        raise Stop

    monkeypatch.setattr(cli, "check_available", lambda *a, **k: None)
    monkeypatch.setattr(cli, "run_suite", fake_run_suite)
    out = CliRunner().invoke(app, ["osworld", "run", "--osworld-dir", str(_checkout(tmp_path)),
                                   "--protocol", protocol, "--out", str(tmp_path / "run")])
    assert isinstance(out.exception, Stop), out.output
    config = seen["config"]
    assert config.engine.retry_errors is retry
    assert seen["suite"].list_tasks() == ["os/t1"]
    assert config.suite_options["test_file"] == "evaluation_examples/test_nogdrive.json"
    assert {k: config.env_options[k] for k in ("region", "enable_proxy", "client_password")} \
        == {"region": "us-east-1", "enable_proxy": True, "client_password": ""}
    # `cua eval osworld` resumes the same way
    import agent.cli.eval as eval_cli

    monkeypatch.setattr(eval_cli, "run_suite", fake_run_suite)
    monkeypatch.setattr("benchmarks.osworld.check_available", lambda *a, **k: None)
    out = CliRunner().invoke(app, ["eval", "osworld", "--osworld-dir", str(tmp_path),
                                   "--protocol", protocol, "--out", str(tmp_path / "run2")])
    assert isinstance(out.exception, Stop), out.output
    assert seen["config"].engine.retry_errors is retry


def test_aws_refuses_missing_settings_in_one_line_before_any_vm(
        real_desktop_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: F811
    """Parity (real package): --provider aws without the variables OSWorld's aws manager
    requires is refused in one line before any VM starts; with them, the snapshot is the
    AMI the Qwen3-VL runner picks from the package's IMAGE_ID_MAP, and DesktopEnv gets
    region, snapshot and proxy (a loopback provider stands in for EC2)."""
    for name in ("AWS_REGION", "AWS_SUBNET_ID", "AWS_SECURITY_GROUP_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(OSWorldUnavailable, match="AWS_REGION, AWS_SUBNET_ID"):
        check_aws_settings()
    with loopback_vm(real_desktop_env, monkeypatch) as vm:
        out = CliRunner().invoke(app, ["osworld", "run", "--osworld-dir",
                                       str(_checkout(tmp_path / "osw")), "--provider", "aws",
                                       "--out", str(tmp_path / "run")],
                                 env={"COLUMNS": "200"})
        assert out.exit_code == 2 and "AWS_SECURITY_GROUP_ID" in out.output, out.output
        assert len(out.output.strip().splitlines()) == 1
        assert vm.provider_calls == []  # type: ignore[attr-defined]
        for name, value in (("AWS_REGION", "us-east-1"), ("AWS_SUBNET_ID", "subnet-1"),
                            ("AWS_SECURITY_GROUP_ID", "sg-1")):
            monkeypatch.setenv(name, value)
        # boto3 is not installed here: a stand-in with the names the aws modules import.
        boto3 = types.ModuleType("boto3")
        boto3.__spec__ = importlib.machinery.ModuleSpec("boto3", None)
        botocore = types.ModuleType("botocore")
        botocore.exceptions = types.SimpleNamespace(ClientError=Exception)
        monkeypatch.setitem(sys.modules, "boto3", boto3)
        monkeypatch.setitem(sys.modules, "botocore", botocore)
        monkeypatch.setitem(sys.modules, "botocore.exceptions", botocore.exceptions)
        from desktop_env.providers.aws.manager import IMAGE_ID_MAP

        from benchmarks.osworld import OSWorldEnvironment

        env = OSWorldEnvironment(provider="aws", region="ap-east-1")
        assert vm.provider_calls == [("aws", "ap-east-1")]  # type: ignore[attr-defined]
        assert env.env.snapshot_name == IMAGE_ID_MAP["ap-east-1"][(1920, 1080)]
        assert (env.env.region, env.env.enable_proxy) == ("ap-east-1", True)
        assert env.env.client_password == "osworld-public-evaluation"

