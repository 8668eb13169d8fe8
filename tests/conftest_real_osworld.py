"""The REAL OSWorld package (`desktop-env==1.0.2`, installed --no-deps by scripts/install.sh
into .desktop-env-target) driven against a fake VM on loopback.

What is real: `desktop_env.desktop_env.DesktopEnv` (reset, step, evaluate, its WAIT /
DONE / FAIL rules, its '<' fix), `desktop_env.controllers.python.PythonController` and
`desktop_env.controllers.setup.SetupController` (every HTTP request they make), and
`desktop_env.providers.base` (the provider classes ours subclass).

What stands in, and for what:
- the VM: `FakeVM`, a loopback HTTP server answering the OSWorld VM server's routes that
  these code paths call (/screenshot, /execute, /run_python, /terminal, /start_recording,
  /end_recording, /setup/execute, /setup/launch). /execute runs the `python -c` program
  PythonController sends, after compiling it, against a recording `pyautogui` (no real
  mouse): every command that reaches the VM must compile and run;
- the hypervisor: `LoopbackProvider` / `LoopbackManager` (subclasses of the package's own
  Provider / VMManager), returned by a patched `create_vm_manager_and_provider`; they
  record the region and snapshot DesktopEnv passes them;
- two modules the package imports at load time whose dependencies are not installed
  here: `desktop_env.evaluators` (its metrics import OCR, audio and office libraries;
  ours has `infeasible` and `exact_match`; the getters are the package's own
  getters/general.py file, loaded directly, and `get_rule`, misc.py's one-liner) and `pydrive` (Google
  Drive, which only the 8 Google-Drive tasks use; test_nogdrive.json leaves them out).
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import io
import json
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / ".desktop-env-target"
STAMP = TARGET / "desktop_env-1.0.2.stamp"
_MODULE_PREFIXES = ("desktop_env", "pydrive", "mm_agents", "requests_toolbelt", "dotenv")


class RecordingPyautogui:
    """What a `python -c "import pyautogui; ..."` program reaches on the fake VM: every
    call is recorded as (name, args, kwargs); the cursor follows x, y."""

    FAILSAFE = True

    def __init__(self, vm: FakeVM) -> None:
        self._vm = vm

    def position(self) -> tuple[int, int]:
        return self._vm.cursor

    def size(self) -> tuple[int, int]:
        return self._vm.size

    def __getattr__(self, name: str) -> Any:
        if name.startswith("ease"):  # pyautogui.easeInQuad etc.: tweening functions
            return lambda n: n

        def call(*args: Any, **kwargs: Any) -> None:
            self._vm.calls.append((name, args, kwargs))
            if name in ("moveTo", "click", "doubleClick", "tripleClick", "rightClick",
                        "middleClick", "dragTo", "mouseDown", "mouseUp") and len(args) >= 2:
                self._vm.cursor = (int(args[0]), int(args[1]))
        return call


class FakeVM:
    """A loopback HTTP server that answers OSWorld's VM server routes (see module doc)."""

    def __init__(self, size: tuple[int, int] = (1920, 1080)) -> None:
        self.size = size
        self.cursor = (960, 540)
        self.calls: list[tuple[str, tuple, dict]] = []  # pyautogui calls, in order
        self.programs: list[str] = []  # every python program the VM was given
        self.compile_errors: list[str] = []
        self.requests: list[str] = []  # "METHOD /route"
        self.command_outputs: dict[str, str] = {}  # shell command -> its output
        self.recording = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeVM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def screenshot_png(self) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", self.size, (40, 40, 40)).save(buf, format="PNG")
        return buf.getvalue()

    def run_program(self, code: str) -> tuple[str, int]:
        """Compile and run one python program against the recording pyautogui."""
        self.programs.append(code)
        try:
            compiled = compile(code, "<fake-vm>", "exec")
        except SyntaxError as exc:
            self.compile_errors.append(f"{exc}: {code}")
            return f"SyntaxError: {exc}", 1
        fake_time = types.SimpleNamespace(sleep=lambda s: None, time=lambda: 0.0)
        pyautogui = RecordingPyautogui(self)

        def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "pyautogui":
                return pyautogui
            if name == "time":
                return fake_time
            return builtins.__import__(name, *args, **kwargs)

        out = io.StringIO()
        namespace = {"__builtins__": {**vars(builtins), "__import__": fake_import,
                                      "print": lambda *a, **k: print(*a, file=out)}}
        exec(compiled, namespace)  # noqa: S102 - the fake VM runs what a VM would run
        return out.getvalue(), 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        vm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, payload: Any, status: int = 200) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    return json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    return {}

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                vm.requests.append(f"GET {self.path}")
                if self.path == "/screenshot":
                    body = vm.screenshot_png()
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == "/terminal":
                    self._json({"output": ""})
                else:
                    self._json({"error": f"no route {self.path}"}, 404)

            def do_POST(self) -> None:  # noqa: N802
                vm.requests.append(f"POST {self.path}")
                data = self._body()
                if self.path in ("/execute", "/setup/execute"):
                    command = data.get("command")
                    if isinstance(command, list) and command[:2] == ["python", "-c"]:
                        output, code = vm.run_program(command[2])
                    else:
                        key = command if isinstance(command, str) else " ".join(command or [])
                        output, code = vm.command_outputs.get(key, ""), 0
                    self._json({"status": "success", "output": output, "error": "",
                                "returncode": code})
                elif self.path == "/run_python":
                    output, code = vm.run_program(data.get("code", ""))
                    self._json({"status": "success" if code == 0 else "error",
                                "output": output, "error": ""})
                elif self.path == "/setup/launch":
                    self._json({"status": "success"})
                elif self.path == "/start_recording":
                    vm.recording = True
                    self._json({"status": "success"})
                elif self.path == "/end_recording":
                    vm.recording = False
                    body = b"fake-mp4"
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._json({"error": f"no route {self.path}"}, 404)

        return Handler


def _stand_in_modules() -> dict[str, types.ModuleType]:
    """`desktop_env.evaluators` and `pydrive` stand-ins (see the module docstring)."""
    evaluators = types.ModuleType("desktop_env.evaluators")
    evaluators.__path__ = []  # a package, so `desktop_env.evaluators.metrics.utils` resolves
    metrics = types.ModuleType("desktop_env.evaluators.metrics")
    metrics.__path__ = []

    def infeasible() -> None:  # evaluate() checks the name before calling any metric
        return None

    def exact_match(result: Any, rules: dict[str, Any]) -> float:
        return float(result == rules["expected"])

    metrics.infeasible = infeasible
    metrics.exact_match = exact_match
    utils = types.ModuleType("desktop_env.evaluators.metrics.utils")
    utils.compare_urls = lambda a, b, full=True: a == b
    metrics.utils = utils
    getters = types.ModuleType("desktop_env.evaluators.getters")
    # The package's own getters/general.py (vm_command_line: POST /execute), loaded as it is.
    path = TARGET / "desktop_env" / "evaluators" / "getters" / "general.py"
    spec = importlib.util.spec_from_file_location("_osworld_getters_general", path)
    assert spec is not None and spec.loader is not None
    general = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(general)
    getters.get_vm_command_line = general.get_vm_command_line
    getters.get_rule = lambda env, config: config["rules"]  # getters/misc.py (needs pytz)
    evaluators.metrics, evaluators.getters = metrics, getters
    pydrive = types.ModuleType("pydrive")
    pydrive.__path__ = []
    auth = types.ModuleType("pydrive.auth")
    drive = types.ModuleType("pydrive.drive")

    class GoogleDriveUnavailable:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("Google Drive is not available in these tests")

    auth.GoogleAuth = GoogleDriveUnavailable
    for name in ("GoogleDrive", "GoogleDriveFile", "GoogleDriveFileList"):
        setattr(drive, name, GoogleDriveUnavailable)
    pydrive.auth, pydrive.drive = auth, drive
    return {"desktop_env.evaluators": evaluators, "desktop_env.evaluators.metrics": metrics,
            "desktop_env.evaluators.metrics.utils": utils,
            "desktop_env.evaluators.getters": getters,
            "pydrive": pydrive, "pydrive.auth": auth, "pydrive.drive": drive}


def _forget_modules() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in _MODULE_PREFIXES]:
        del sys.modules[name]


@pytest.fixture()
def real_desktop_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """The real `desktop_env` package importable (appended to sys.path, so our venv's
    packages win), the stand-in modules in place; yields the `desktop_env.desktop_env`
    module. The working directory is tmp_path (DesktopEnv keeps its cache in ./cache)."""
    assert STAMP.is_file(), (
        f"{TARGET} is missing desktop-env 1.0.2: run scripts/install.sh (make install)")
    _forget_modules()
    monkeypatch.setattr(sys, "path", [*sys.path, str(TARGET)])
    for name, module in _stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.chdir(tmp_path)
    import desktop_env.desktop_env as module

    assert Path(module.__file__).is_relative_to(TARGET), module.__file__
    yield module
    _forget_modules()


@contextlib.contextmanager
def loopback_vm(desktop_env_module: Any, monkeypatch: pytest.MonkeyPatch,
                size: tuple[int, int] = (1920, 1080)) -> Iterator[FakeVM]:
    """A FakeVM, with DesktopEnv's provider factory answering every provider name with a
    loopback provider pointing at it. `vm.provider_calls` records (name, region) and
    `vm.reverts` the snapshots reverted to."""
    from desktop_env.providers.base import Provider, VMManager

    with FakeVM(size) as vm:
        vm.provider_calls = []  # type: ignore[attr-defined]
        vm.reverts = []  # type: ignore[attr-defined]

        class LoopbackProvider(Provider):
            def start_emulator(self, path_to_vm: str, headless: bool, *args: Any) -> None:
                pass

            def get_ip_address(self, path_to_vm: str) -> str:
                return f"127.0.0.1:{vm.port}:9222:8006:8080"

            def save_state(self, path_to_vm: str, snapshot_name: str) -> None:
                pass

            def revert_to_snapshot(self, path_to_vm: str, snapshot_name: str) -> str:
                vm.reverts.append(snapshot_name)  # type: ignore[attr-defined]
                return path_to_vm

            def stop_emulator(self, path_to_vm: str, *args: Any) -> None:
                pass

        class LoopbackManager(VMManager):
            def initialize_registry(self, **kwargs: Any) -> None: ...
            def add_vm(self, vm_path: str, **kwargs: Any) -> None: ...
            def delete_vm(self, vm_path: str, **kwargs: Any) -> None: ...
            def occupy_vm(self, vm_path: str, pid: int, **kwargs: Any) -> None: ...
            def list_free_vms(self, **kwargs: Any) -> list[str]:
                return ["loopback"]
            def check_and_clean(self, **kwargs: Any) -> None: ...
            def get_vm_path(self, **kwargs: Any) -> str:
                return "loopback"

        def factory(provider_name: str, region: str, use_proxy: bool = False) -> Any:
            vm.provider_calls.append((provider_name, region))  # type: ignore[attr-defined]
            return LoopbackManager(), LoopbackProvider(region)

        monkeypatch.setattr(desktop_env_module, "create_vm_manager_and_provider", factory)
        yield vm
