"""The virtual device: adb services (`shell:`, `shell,v2:`, `exec:`, `sync:`) and the
shell commands a GUI agent's Android driver uses, backed by the Chromium `Screen`.

Commands answer in the format real Android prints (e.g. `wm size` -> "Physical size:
720x1600"), so the client code that parses them is the code that runs against phones.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from benchmarks.android.virtual_device.protocol import Stream
from benchmarks.android.virtual_device.screen import APPS, APPS_BY_PACKAGE, LAUNCHER, Screen
from benchmarks.android.virtual_device.shell_parse import ShellSyntaxError, expand, parse

logger = logging.getLogger(__name__)

ADB_KEYBOARD_IME = "com.android.adbkeyboard/.AdbIME"
LATIN_IME = "com.android.inputmethod.latin/.LatinIME"
KEYCODE_NAMES = {
    "HOME": 3, "BACK": 4, "DPAD_UP": 19, "DPAD_DOWN": 20, "DPAD_LEFT": 21, "DPAD_RIGHT": 22,
    "VOLUME_UP": 24, "VOLUME_DOWN": 25, "POWER": 26, "TAB": 61, "SPACE": 62, "ENTER": 66,
    "DEL": 67, "MENU": 82, "ESCAPE": 111, "FORWARD_DEL": 112, "MOVE_HOME": 122,
    "MOVE_END": 123, "NUMPAD_ENTER": 160, "APP_SWITCH": 187, "WAKEUP": 224,
    "CTRL_LEFT": 113, "CTRL_RIGHT": 114, "SHIFT_LEFT": 59, "SHIFT_RIGHT": 60, "ALT_LEFT": 57,
    "ALT_RIGHT": 58, "META_LEFT": 117, "PAGE_UP": 92, "PAGE_DOWN": 93,
    **{str(d): 7 + d for d in range(10)},
    **{chr(ord("A") + i): 29 + i for i in range(26)},
}


class CommandError(Exception):
    """A shell command failed: `message` goes to stderr, `status` is the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Result:
    stdout: bytes = b""
    stderr: bytes = b""
    status: int = 0


@dataclass
class FileEntry:
    data: bytes
    mtime: int = field(default_factory=lambda: int(time.time()))
    mode: int = 0o100660


class VirtualDevice:
    """State and commands of one virtual phone (see the package docstring)."""

    def __init__(self, screen: Screen, serial: str = "vdev-0001", model: str = "VirtualPhone",
                 sdk: int = 34, adb_keyboard: bool = True) -> None:
        self.screen = screen
        self.serial = serial
        self.props = {
            "ro.product.model": model, "ro.product.name": "vdev", "ro.product.device": "vdev",
            "ro.product.manufacturer": "qwen-cua", "ro.build.version.sdk": str(sdk),
            "ro.build.version.release": "14", "ro.serialno": serial,
            "ro.build.characteristics": "phone", "sys.boot_completed": "1",
            "ro.sf.lcd_density": str(screen.density_dpi),
        }
        self.files: dict[str, FileEntry] = {}
        self.imes = [LATIN_IME] + ([ADB_KEYBOARD_IME] if adb_keyboard else [])
        self.enabled_imes = set(self.imes)
        self.default_ime = ADB_KEYBOARD_IME if adb_keyboard else LATIN_IME
        self.commands: dict[str, Callable[[list[str], bytes], Awaitable[bytes | str]]] = {
            "input": self._input, "screencap": self._screencap, "wm": self._wm,
            "uiautomator": self._uiautomator, "am": self._am, "monkey": self._monkey,
            "pm": self._pm, "cmd": self._cmd, "dumpsys": self._dumpsys, "getprop": self._getprop,
            "ime": self._ime, "settings": self._settings, "content": self._content,
            "echo": self._echo, "cat": self._cat, "rm": self._rm, "ls": self._ls,
            "grep": self._grep, "true": self._true, "false": self._false, "id": self._id,
        }

    @property
    def banner(self) -> bytes:
        props = ";".join(f"{k}={self.props[k]}" for k in
                         ("ro.product.name", "ro.product.model", "ro.product.device"))
        return f"device::{props};features=shell_v2,cmd\0".encode()

    # ---- services ----

    async def handle(self, stream: Stream) -> None:
        service = stream.service
        if service.startswith("shell"):
            head, _, command = service.partition(":")
            options = head.split(",")[1:]
            result = await self.run(command)
            if "v2" in options:
                await self._write_v2(stream, result)
            else:
                await stream.write(result.stdout + result.stderr)
        elif service.startswith("exec:"):
            result = await self.run(service[len("exec:"):])
            await stream.write(result.stdout + result.stderr)
        elif service.startswith("sync:"):
            await self._sync(stream)
        else:
            logger.info("refusing service %r", service)
        await stream.close()

    async def _write_v2(self, stream: Stream, result: Result) -> None:
        # shell protocol v2 packets: id (1 = stdout, 2 = stderr, 3 = exit), uint32 length.
        out = bytearray()
        for packet_id, data in ((1, result.stdout), (2, result.stderr)):
            if data:
                out += struct.pack("<BI", packet_id, len(data)) + data
        out += struct.pack("<BI", 3, 1) + bytes([result.status & 0xFF])
        await stream.write(bytes(out))

    async def _sync(self, stream: Stream) -> None:
        """The file-sync protocol (AOSP `SYNC.TXT`): STAT, LIST, RECV, SEND, QUIT."""
        while True:
            try:
                header = await stream.read_exactly(8)
            except EOFError:
                return
            request, length = header[:4], struct.unpack("<I", header[4:])[0]
            if request == b"QUIT":
                return
            path = (await stream.read_exactly(length)).decode()
            if request == b"STAT":
                entry = self.files.get(path)
                is_dir = path.rstrip("/") in ("/sdcard", "/data/local/tmp", "")
                mode = entry.mode if entry else (0o40771 if is_dir else 0)
                size = len(entry.data) if entry else 0
                mtime = entry.mtime if entry else 0
                await stream.write(b"STAT" + struct.pack("<III", mode, size, mtime))
            elif request == b"LIST":
                prefix = path.rstrip("/") + "/"
                out = bytearray()
                for name, entry in self.files.items():
                    if name.startswith(prefix) and "/" not in name[len(prefix):]:
                        base = name[len(prefix):].encode()
                        out += b"DENT" + struct.pack("<IIII", entry.mode, len(entry.data),
                                                     entry.mtime, len(base)) + base
                out += b"DONE" + bytes(16)
                await stream.write(bytes(out))
            elif request == b"RECV":
                entry = self.files.get(path)
                if entry is None:
                    message = f"remote object '{path}' does not exist".encode()
                    await stream.write(b"FAIL" + struct.pack("<I", len(message)) + message)
                    continue
                out = bytearray()
                for start in range(0, len(entry.data), 64 * 1024):
                    chunk = entry.data[start:start + 64 * 1024]
                    out += b"DATA" + struct.pack("<I", len(chunk)) + chunk
                out += b"DONE" + struct.pack("<I", 0)
                await stream.write(bytes(out))
            elif request == b"SEND":
                name, _, mode_text = path.rpartition(",")
                data = bytearray()
                while True:
                    kind = await stream.read_exactly(4)
                    value = struct.unpack("<I", await stream.read_exactly(4))[0]
                    if kind == b"DATA":
                        data += await stream.read_exactly(value)
                    elif kind == b"DONE":
                        mode = int(mode_text) if mode_text.isdigit() else 0o100644
                        self.files[name or path] = FileEntry(bytes(data), value, mode)
                        break
                    else:
                        raise EOFError(f"unexpected sync chunk {kind!r}")
                await stream.write(b"OKAY" + bytes(4))
            else:
                message = f"unknown sync request {request!r}".encode()
                await stream.write(b"FAIL" + struct.pack("<I", len(message)) + message)
                return

    # ---- the shell ----

    async def run(self, line: str) -> Result:
        """Run a command line as `sh -c` would, returning stdout, stderr and exit status."""
        try:
            pipelines = parse(line)
        except ShellSyntaxError as exc:
            return Result(stderr=f"/system/bin/sh: {exc}\n".encode(), status=2)
        stdout, stderr = bytearray(), bytearray()
        status = 0
        for pipeline in pipelines:
            if (pipeline.joiner == "&&" and status != 0) or (
                    pipeline.joiner == "||" and status == 0):
                continue
            data = b""
            for command in pipeline.commands:
                argv = [expand(word, status) for word in command.argv]
                out, err, status = await self._run_one(argv, data)
                if command.stderr_to_stdout:
                    out, err = out + err, b""
                if command.discard_stderr:
                    err = b""
                if command.stdout_file and command.stdout_file != "/dev/null":
                    previous = self.files.get(command.stdout_file)
                    base = previous.data if previous and command.append else b""
                    self.files[command.stdout_file] = FileEntry(base + out)
                    out = b""
                elif command.stdout_file == "/dev/null":
                    out = b""
                stderr += err
                data = out
            stdout += data
        return Result(bytes(stdout), bytes(stderr), status)

    async def _run_one(self, argv: list[str], stdin: bytes) -> tuple[bytes, bytes, int]:
        name = argv[0]
        handler = self.commands.get(name)
        if handler is None:
            return b"", f"/system/bin/sh: {name}: inaccessible or not found\n".encode(), 127
        try:
            out = await handler(argv[1:], stdin)
        except CommandError as exc:
            message = str(exc)
            return b"", (message + "\n").encode() if message else b"", exc.status
        except (ValueError, IndexError, KeyError) as exc:
            return b"", f"{name}: bad arguments {argv[1:]!r}: {exc}\n".encode(), 1
        return (out.encode() if isinstance(out, str) else out), b"", 0

    # ---- commands ----

    async def _input(self, args: list[str], _stdin: bytes) -> str:
        if args and args[0] in ("touchscreen", "keyboard", "mouse", "touchpad", "dpad"):
            args = args[1:]
        if not args:
            raise CommandError("usage: input [source] <command> [args]")
        verb, rest = args[0], args[1:]
        screen = self.screen
        async with screen.lock:
            if verb == "tap":
                await screen.tap(float(rest[0]), float(rest[1]))
            elif verb in ("swipe", "draganddrop"):
                duration_ms = float(rest[4]) if len(rest) > 4 else 300.0
                await screen.gesture(*(float(v) for v in rest[:4]), duration_s=duration_ms / 1000)
            elif verb == "keyevent":
                codes = [c for c in rest if not c.startswith("--")]
                for code in codes:
                    await screen.key(self._keycode(code))
            elif verb == "keycombination":
                await screen.key_combination([self._keycode(c) for c in rest
                                              if not c.startswith("-")])
            elif verb == "text":
                text = rest[0].replace("%s", " ")
                bad = [ch for ch in text if not (32 <= ord(ch) < 127)]
                if bad:
                    raise CommandError(
                        f"Exception occurred while executing 'text': no key mapping for "
                        f"{bad[0]!r} in the virtual keyboard's KeyCharacterMap")
                await screen.type_keys(text)
            else:
                raise CommandError(f"Error: Unknown command: {verb}")
        return ""

    @staticmethod
    def _keycode(code: str) -> int:
        if code.isdigit():
            return int(code)
        name = code.upper().removeprefix("KEYCODE_")
        if name not in KEYCODE_NAMES:
            raise CommandError(f"Error: unknown keycode {code!r}")
        return KEYCODE_NAMES[name]

    async def _screencap(self, args: list[str], _stdin: bytes) -> bytes:
        async with self.screen.lock:
            png = await self.screen.screenshot_png()
        files = [a for a in args if not a.startswith("-")]
        if "-p" not in args and not (files and files[0].endswith(".png")):
            from PIL import Image

            image = Image.open(io.BytesIO(png)).convert("RGBA")
            # Raw format: width, height, pixel format (1 = RGBA_8888), colour space, pixels.
            png = struct.pack("<IIII", image.width, image.height, 1, 0) + image.tobytes()
        if files:
            self.files[files[0]] = FileEntry(png)
            return b""
        return png

    async def _wm(self, args: list[str], _stdin: bytes) -> str:
        s = self.screen
        if args[:1] == ["size"] and len(args) == 1:
            text = f"Physical size: {s.physical_width_px}x{s.physical_height_px}\n"
            if (s.width_px, s.height_px) != (s.physical_width_px, s.physical_height_px):
                text += f"Override size: {s.width_px}x{s.height_px}\n"
            return text
        if args[:1] == ["size"] and len(args) == 2:
            if args[1] == "reset":
                width, height = s.physical_width_px, s.physical_height_px
            else:
                match = re.fullmatch(r"(\d+)x(\d+)", args[1])
                if not match:
                    raise CommandError(f"Error: bad size {args[1]!r} (use WxH or reset)")
                width, height = int(match.group(1)), int(match.group(2))
            async with s.lock:
                await s.resize(width, height)
            return ""
        if args[:1] == ["density"] and len(args) == 1:
            return f"Physical density: {s.density_dpi}\n"
        raise CommandError(f"wm {' '.join(args)}: the virtual device's display is fixed")

    async def _uiautomator(self, args: list[str], _stdin: bytes) -> str:
        if not args or args[0] != "dump":
            raise CommandError("usage: uiautomator dump [--compressed] [file]")
        files = [a for a in args[1:] if not a.startswith("--")]
        target = files[0] if files else "/sdcard/window_dump.xml"
        async with self.screen.lock:
            xml = await self.screen.dump_ui_xml()
        if target == "/dev/tty":
            return xml + "UI hierchary dumped to: /dev/tty\n"
        self.files[target] = FileEntry(xml.encode())
        return f"UI hierchary dumped to: {target}\n"

    @staticmethod
    def _options(args: list[str]) -> dict[str, list[str]]:
        """`am`-style options: '-n X', '--es KEY VALUE', ... -> {'-n': [X], '--es': [K, V]}."""
        options: dict[str, list[str]] = {}
        i = 0
        arity = {"--es": 2, "--ei": 2, "--ez": 2, "--eia": 2, "--esa": 2}
        while i < len(args):
            flag = args[i]
            count = arity.get(flag, 1 if flag in ("-n", "-a", "-c", "-d", "-t", "-f", "--user",
                                                  "-p") else 0)
            options.setdefault(flag, []).extend(args[i + 1:i + 1 + count])
            i += 1 + count
        return options

    async def _am(self, args: list[str], _stdin: bytes) -> str:
        verb, rest = args[0], args[1:]
        if verb == "start":
            options = self._options(rest)
            component = (options.get("-n") or [""])[0]
            package = component.split("/")[0]
            if not package and options.get("-c") == ["android.intent.category.HOME"]:
                package = LAUNCHER
            if package not in APPS_BY_PACKAGE:
                raise CommandError(
                    f"Error: Activity not started, unable to resolve Intent {{ cmp={component} }}")
            async with self.screen.lock:
                await self.screen.launch(package)
            return f"Starting: Intent {{ cmp={component} }}\n"
        if verb == "force-stop":
            async with self.screen.lock:
                await self.screen.force_stop(rest[0])
            return ""
        if verb == "broadcast":
            return await self._broadcast(self._options(rest))
        raise CommandError(f"am: unsupported verb {verb!r}")

    async def _broadcast(self, options: dict[str, list[str]]) -> str:
        action = (options.get("-a") or [""])[0]
        extras = options.get("--es", [])
        values = dict(zip(extras[::2], extras[1::2], strict=False))
        int_extras = options.get("--ei", [])
        int_values = dict(zip(int_extras[::2], int_extras[1::2], strict=False))
        ime_active = self.default_ime == ADB_KEYBOARD_IME
        if action.startswith("ADB_") and ime_active:
            async with self.screen.lock:
                if action == "ADB_INPUT_TEXT":
                    await self.screen.commit_text(values.get("msg", ""))
                elif action == "ADB_INPUT_B64":
                    await self.screen.commit_text(base64.b64decode(values["msg"]).decode())
                elif action == "ADB_CLEAR_TEXT":
                    await self.screen.clear_focused_text()
                elif action in ("ADB_INPUT_CODE", "ADB_EDITOR_CODE"):
                    await self.screen.key(int(int_values.get("code", "66")))
        return (f"Broadcasting: Intent {{ act={action} flg=0x400000 (has extras) }}\n"
                "Broadcast completed: result=0\n")

    async def _monkey(self, args: list[str], _stdin: bytes) -> str:
        options = self._options(args)
        package = (options.get("-p") or [""])[0]
        app = APPS_BY_PACKAGE.get(package)
        if app is None or not app.launchable:
            raise CommandError(f"** No activities found to run, monkey aborted.\n"
                               f"(package {package!r})")
        async with self.screen.lock:
            await self.screen.launch(package)
        return "Events injected: 1\n## Network stats: elapsed time=10ms (0ms mobile, 0ms wifi)\n"

    async def _pm(self, args: list[str], _stdin: bytes) -> str:
        verb, rest = args[0], args[1:]
        packages = [app.package for app in APPS] + (
            ["com.android.adbkeyboard"] if ADB_KEYBOARD_IME in self.imes else [])
        packages += ["com.android.inputmethod.latin", "com.android.systemui", "android"]
        if verb == "list" and rest[:1] == ["packages"]:
            needle = next((a for a in rest[1:] if not a.startswith("-")), "")
            return "".join(f"package:{p}\n" for p in sorted(packages) if needle in p)
        if verb == "clear":
            if rest[0] not in APPS_BY_PACKAGE:
                raise CommandError(f"Error: package {rest[0]} not found")
            async with self.screen.lock:
                await self.screen.clear_data(rest[0])
            return "Success\n"
        if verb == "uninstall" and rest[-1:] == ["com.android.adbkeyboard"]:
            self.imes = [i for i in self.imes if i != ADB_KEYBOARD_IME]
            self.enabled_imes.discard(ADB_KEYBOARD_IME)
            if self.default_ime == ADB_KEYBOARD_IME:
                self.default_ime = LATIN_IME
            return "Success\n"
        if verb == "install-existing" and rest[-1:] == ["com.android.adbkeyboard"]:
            if ADB_KEYBOARD_IME not in self.imes:
                self.imes.append(ADB_KEYBOARD_IME)
            return "Package com.android.adbkeyboard installed for user: 0\n"
        if verb == "path":
            if rest[0] not in packages:
                raise CommandError("", status=1)
            return f"package:/data/app/{rest[0]}/base.apk\n"
        raise CommandError(f"pm: unsupported verb {verb!r}")

    async def _cmd(self, args: list[str], _stdin: bytes) -> str:
        if args[:2] == ["package", "resolve-activity"]:
            package = [a for a in args[2:] if not a.startswith("-")
                       and a != "android.intent.category.LAUNCHER"][-1]
            app = APPS_BY_PACKAGE.get(package)
            if app is None or not app.launchable:
                return "No activity found\n"
            if "--brief" in args:
                return f"priority=0 preferredOrder=0 match=0x108000 specificIndex=-1 isDefault=false\n{app.component}\n"
            return f"  ActivityInfo:\n    name={app.package}{app.activity}\n    packageName={app.package}\n"
        if args[:1] == ["package"]:
            return await self._pm(args[1:], b"")
        raise CommandError(f"cmd: unsupported service {args[:1]}")

    async def _dumpsys(self, args: list[str], _stdin: bytes) -> str:
        """`dumpsys window`, `dumpsys activity activities`, `dumpsys input_method`: the
        lines drivers read, in the formats AOSP's CTS parsers match (TeamWin/android_cts
        @ c356bf1f, hostsidetests/services/activityandwindowmanager/util/src/android/server/
        cts/WindowManagerState.java: `mCurrentFocus=Window\\{([0-9a-fA-F]+) u(\\d+) (\\S+)\\}`,
        `mAppTransitionState=(.+)`; ActivityManagerState.java @ 00013a7a:
        `mResumedActivity\\: ActivityRecord\\{(.+) u(\\d+) (\\S+) (\\S+)\\}`); the newer
        `mFocusedApp=ActivityRecord{..}` form (Android 10+). While a started app has not
        drawn its first frame, the focused app and resumed activity are already the new
        one, no window has the focus (`mCurrentFocus=null`) and the transition is
        APP_STATE_READY (AppTransition's states: IDLE, READY, RUNNING, TIMEOUT)."""
        screen = self.screen
        app = APPS_BY_PACKAGE[screen.foreground]
        record = f"ActivityRecord{{{_token(app.package, 'a')} u0 {app.component} t12}}"
        if args[:1] == ["window"]:
            drawn = not screen.transition_pending and screen.shown == screen.foreground
            focus = (f"Window{{{_token(app.package, 'w')} u0 {app.package}/"
                     f"{app.package}{app.activity}}}" if drawn else "null")
            state = "APP_STATE_READY" if screen.transition_pending else "APP_STATE_IDLE"
            return ("WINDOW MANAGER WINDOWS (dumpsys window windows)\n"
                    f"  mCurrentFocus={focus}\n"
                    f"  mFocusedApp={record}\n"
                    f"  mTopActivityComponent={app.component}\n"
                    "WINDOW MANAGER TRANSITION (dumpsys window transition)\n"
                    f"  mAppTransitionState={state}\n")
        if args[:1] == ["activity"] and args[1:2] in ([], ["activities"]):
            return ("ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)\n"
                    "Display #0 (activities from top to bottom):\n"
                    f"    mResumedActivity: {record}\n"
                    f"  topResumedActivity={record}\n")
        if args[:1] == ["input_method"]:
            async with screen.lock:
                shown = await screen.input_shown()
            return (f"  mCurMethodId={self.default_ime}\n"
                    f"  mInputShown={'true' if shown else 'false'}\n")
        raise CommandError(f"dumpsys: service {args[:1]} not available on the virtual device")

    async def _getprop(self, args: list[str], _stdin: bytes) -> str:
        if args:
            return self.props.get(args[0], "") + "\n"
        return "".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items()))

    async def _ime(self, args: list[str], _stdin: bytes) -> str:
        verb = args[0]
        if verb == "list":
            ids = self.imes if "-a" in args else [i for i in self.imes if i in self.enabled_imes]
            if "-s" in args:
                return "".join(f"{i}\n" for i in ids)
            return "".join(f"{i}:\n  mId={i}\n" for i in ids)
        ime = args[1] if len(args) > 1 else ""
        if ime not in self.imes:
            raise CommandError(f"Unknown input method {ime} cannot be {verb}d for user #0")
        if verb == "enable":
            self.enabled_imes.add(ime)
            return f"Input method {ime}: now enabled for user #0\n"
        if verb == "disable":
            self.enabled_imes.discard(ime)
            if self.default_ime == ime:
                self.default_ime = LATIN_IME
            return f"Input method {ime}: now disabled for user #0\n"
        if verb == "set":
            if ime not in self.enabled_imes:
                raise CommandError(f"Input method {ime} is not enabled")
            self.default_ime = ime
            return f"Input method {ime} selected for user #0\n"
        raise CommandError(f"ime: unsupported verb {verb!r}")

    async def _settings(self, args: list[str], _stdin: bytes) -> str:
        verb, namespace = args[0], args[1]
        if namespace not in ("system", "secure", "global"):
            raise CommandError(f"Invalid namespace '{namespace}'")
        if (namespace, args[2:3]) == ("secure", ["default_input_method"]):
            if verb == "get":
                return self.default_ime + "\n"
        key = f"com.vdev.settings/{namespace}"
        stored = json.loads(await self.screen.storage_get(key) or "{}")
        if verb == "get":
            value = stored.get(args[2])
            if value is None:
                value = await self.screen.pages["com.vdev.settings"].evaluate(
                    "([ns, k]) => get(ns, k) ?? null", [namespace, args[2]])
            return f"{'null' if value is None else value}\n"
        if verb == "put":
            stored[args[2]] = args[3]
            await self.screen.storage_set(key, json.dumps(stored))
            return ""
        if verb == "delete":
            stored.pop(args[2], None)
            await self.screen.storage_set(key, json.dumps(stored))
            return ""
        if verb == "list":
            return "".join(f"{k}={v}\n" for k, v in sorted(stored.items()))
        raise CommandError(f"settings: unsupported verb {verb!r}")

    async def _content(self, args: list[str], _stdin: bytes) -> str:
        """`content query|insert|delete|update --uri content://PACKAGE/TABLE ...`.

        The virtual apps' tables are the device's content providers; evaluators read
        them through adb exactly as AndroidWorld reads a real phone's providers.
        """
        verb = args[0]
        options: dict[str, list[str]] = {}
        i = 1
        while i < len(args):
            options.setdefault(args[i], []).append(args[i + 1])
            i += 2
        match = re.fullmatch(r"content://([\w.]+)/(\w+)(?:/(\d+))?", (options.get("--uri") or [""])[0])
        if not match or match.group(1) not in APPS_BY_PACKAGE:
            raise CommandError(f"Error while accessing provider: unknown URI {options.get('--uri')}")
        package, table, row_id = match.group(1), match.group(2), match.group(3)
        rows = await self.screen.table(package, table)

        def selected(row: dict) -> bool:
            if row_id is not None and row.get("_id") != int(row_id):
                return False
            for clause in options.get("--where", []):
                for part in re.split(r"\s+AND\s+", clause, flags=re.I):
                    m = re.fullmatch(r"\s*(\w+)\s*=\s*'?(.*?)'?\s*", part)
                    if not m:
                        raise CommandError(f"unsupported where clause {part!r} (use col='v')")
                    if str(row.get(m.group(1))) != m.group(2):
                        return False
            return True

        def bound() -> dict:
            values: dict = {}
            for binding in options.get("--bind", []):
                column, kind, value = binding.split(":", 2)
                values[column] = int(value) if kind in ("i", "l") else (
                    value.lower() == "true" if kind == "b" else value)
            return values

        if verb == "query":
            out = []
            for n, row in enumerate(r for r in rows if selected(r)):
                out.append(f"Row: {n} " + ", ".join(f"{k}={v}" for k, v in row.items()))
            return ("\n".join(out) + "\n") if out else "No result found.\n"
        if verb == "insert":
            row = bound()
            row["_id"] = max((r.get("_id", 0) for r in rows), default=0) + 1
            rows.append(row)
        elif verb == "delete":
            rows = [r for r in rows if not selected(r)]
        elif verb == "update":
            values = bound()
            rows = [{**r, **values} if selected(r) else r for r in rows]
        else:
            raise CommandError(f"content: unsupported verb {verb!r}")
        await self.screen.set_table(package, table, rows)
        return ""

    async def _echo(self, args: list[str], _stdin: bytes) -> str:
        return " ".join(args) + "\n"

    async def _cat(self, args: list[str], stdin: bytes) -> bytes:
        if not args:
            return stdin
        out = bytearray()
        for path in args:
            entry = self.files.get(path)
            if entry is None:
                raise CommandError(f"cat: {path}: No such file or directory")
            out += entry.data
        return bytes(out)

    async def _rm(self, args: list[str], _stdin: bytes) -> str:
        for path in (a for a in args if not a.startswith("-")):
            if self.files.pop(path, None) is None and "-f" not in args:
                raise CommandError(f"rm: {path}: No such file or directory")
        return ""

    async def _ls(self, args: list[str], _stdin: bytes) -> str:
        prefix = next((a for a in args if not a.startswith("-")), "/sdcard").rstrip("/") + "/"
        return "".join(p[len(prefix):] + "\n" for p in sorted(self.files) if p.startswith(prefix))

    async def _grep(self, args: list[str], stdin: bytes) -> bytes:
        flags = [a for a in args if a.startswith("-")]
        pattern = next(a for a in args if not a.startswith("-"))
        regex = re.compile(pattern, re.I if "-i" in flags else 0)
        lines = stdin.decode(errors="replace").splitlines(keepends=True)
        keep = [line for line in lines if bool(regex.search(line)) != ("-v" in flags)]
        if not keep:
            raise CommandError("", status=1)
        return "".join(keep).encode()

    async def _true(self, _args: list[str], _stdin: bytes) -> str:
        return ""

    async def _false(self, _args: list[str], _stdin: bytes) -> str:
        raise CommandError("", status=1)

    async def _id(self, _args: list[str], _stdin: bytes) -> str:
        return "uid=2000(shell) gid=2000(shell) groups=2000(shell) context=u:r:shell:s0\n"


def _token(package: str, kind: str) -> str:
    """A stable hex object id for an app's window or activity record (as in dumpsys)."""
    return format(zlib.crc32(f"{kind}:{package}".encode()) & 0xFFFFFFF, "x")
