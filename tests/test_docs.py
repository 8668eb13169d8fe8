"""The README and docs/: every docs page is linked from the README, every relative link
resolves, and every command in a ```bash block runs (plumbing, against our own files).

The convention for commands in the docs (write docs to it):

1. A ```bash block is run: its commands in order (a line ending in a backslash continues
   on the next), each with `bash -c`, and each must exit 0. ```text blocks are never run:
   use them for what cannot run here (GPUs, real phones, other machines, interactive use).
2. The blocks of one page share one fresh working directory (so a later block can read
   what an earlier one wrote, e.g. `runs/...`), with `.venv` there linked to the running
   virtual environment, its `bin` first on PATH (`cua`, `python`), the repository on
   PYTHONPATH, and a private adb server (ANDROID_ADB_SERVER_PORT; killed afterwards).
3. Dry run: a block whose fence is preceded by the line ``<!-- docs-test: dry-run -->``
   runs each command with ``--help`` appended, which checks that the command and every
   option it names exist, without the long job. Commands that run the test suite itself
   (``python -m pytest ...``) are always dry-run: the suite must not recurse into itself.
4. A command ending in `&` starts in the background; when it names ``--port N`` the next
   command waits until that port accepts connections. Background processes are stopped
   when the page is done.
5. Substitutions, so that pages stay readable and tests stay isolated: ports 8000 and 5599
   become free ports; ``/tmp/tiny-qwen3vl`` becomes a folder in the working directory; and
   the model server (``python -m policies.chat_server ...``) is replaced by the scripted
   loopback chat server (tests/conftest_faults.FakeChatServer, answering a click at the
   screen's centre under the served model name), because the tiny model takes minutes per
   step on two busy cores. Every other word of a command runs as written.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest_faults import FakeChatServer

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
DRY_RUN_MARK = "<!-- docs-test: dry-run -->"
COMMAND_TIMEOUT_S = 600


def test_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md"))
                if f"(docs/{p.name})" not in readme]
    assert not unlinked, f"docs pages not linked from README.md's table: {unlinked}"


def test_relative_links_resolve() -> None:
    broken = []
    for doc in DOC_FILES:
        for target in LINK.findall(doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_links_and_paths_stay_inside_the_repository() -> None:
    """A user's clone has only the repository: no link or `../path` may leave it."""
    outside = []
    for doc in DOC_FILES:
        text = doc.read_text()
        targets = [t for t in LINK.findall(text) if "://" not in t and not t.startswith("mailto:")]
        targets += re.findall(r"`(\.\./[^`\s]+)`", text)
        for target in targets:
            if not (doc.parent / target).resolve().is_relative_to(ROOT):
                outside.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not outside, "paths outside the repository:\n" + "\n".join(outside)


def test_the_architecture_map_names_files_that_exist() -> None:
    """docs/architecture.md is the map: every `package/module.py` it names must exist."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([a-z_]+/[\w/]+\.py)`", text))
    assert len(named) >= 10
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _numbers(text: str) -> list[str]:
    return [n.replace(",", "") for n in NUMBER.findall(text)]


def test_each_measured_figure_in_the_readme_appears_in_the_page_it_cites() -> None:
    """Every number in the README's Measured table is on a docs page the row links to
    (where the command that produced it is written beside it)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Measured\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines()
            if line.startswith("|") and not line.startswith(("| what", "|---"))]
    assert len(rows) >= 5, f"the Measured table has {len(rows)} rows"
    missing = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 3, f"a Measured row needs what | figure | command / page: {row}"
        what, figure, source = cells
        pages = [ROOT / target for target in LINK.findall(source)]
        assert pages, f"the Measured row {what!r} cites no docs page"
        cited = " ".join(" ".join(_numbers(page.read_text())) for page in pages)
        for number in _numbers(figure):
            if not re.search(rf"(?<![\d.]){re.escape(number)}(?!\.?\d)", cited):
                missing.append(f"{what}: {number} (not in {', '.join(p.name for p in pages)})")
    assert not missing, "README figures without a source on the cited page:\n" + "\n".join(
        missing)


@dataclass(frozen=True)
class Block:
    line: int
    dry_run: bool
    commands: list[str]


def bash_blocks(text: str) -> list[Block]:
    """The ```bash blocks of a page, with their commands (continuations joined)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```bash":
            previous = next((lines[i].strip() for i in range(index - 1, -1, -1)
                             if lines[i].strip()), "")
            start = index
            body: list[str] = []
            index += 1
            while index < len(lines) and lines[index].strip() != "```":
                body.append(lines[index])
                index += 1
            commands: list[str] = []
            pending = ""
            for raw in body:
                if raw.rstrip().endswith("\\"):
                    pending += raw.rstrip()[:-1] + " "
                    continue
                command = (pending + raw).strip()
                pending = ""
                if command and not command.startswith("#"):
                    commands.append(command)
            blocks.append(Block(start + 1, previous == DRY_RUN_MARK, commands))
        index += 1
    return blocks


def test_the_block_parser() -> None:
    text = ("intro\n\n" + DRY_RUN_MARK + "\n```bash\n# a comment\ncua eval x \\\n    --out y"
            "   # trailing\npython -m thing &\n```\n```text\nnot run\n```\n")
    [block] = bash_blocks(text)
    assert block.dry_run and block.line == 4
    assert block.commands == ["cua eval x      --out y   # trailing", "python -m thing &"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)  # polling a port with a deadline
    raise AssertionError(f"nothing listens on port {port} after {timeout_s} s")


PAGES_WITH_COMMANDS = [p for p in DOC_FILES if bash_blocks(p.read_text())]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_COMMANDS, ids=lambda p: p.name)
def test_commands_in_the_docs_run(page: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.prefix))
    adb_port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "ANDROID_ADB_SERVER_PORT": str(adb_port),
           "COLUMNS": "160"}
    ports = {"8000": str(_free_port()), "5599": str(_free_port())}
    background: list[subprocess.Popen[bytes]] = []
    servers: list[FakeChatServer] = []
    # Started here, not by the first `adb` command: a daemon forked from a command whose
    # output we read would keep the pipe open.
    subprocess.run(["adb", "-P", str(adb_port), "start-server"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60, check=True, env=env)

    def substitute(command: str) -> str:
        command = command.replace("/tmp/tiny-qwen3vl", str(work / "tiny-qwen3vl"))
        for old, new in ports.items():
            command = re.sub(rf"(?<=[:\s]){old}\b", new, command)
        return command

    try:
        for block in bash_blocks(page.read_text()):
            for written in block.commands:
                # a trailing comment says what a command does; it must not hide its `&`
                command = substitute(re.sub(r"\s+#[^'\"]*$", "", written))
                where = f"{page.name}:{block.line}: {written}"
                if re.match(r"^(\S*/)?python -m policies\.chat_server\b", command):
                    name = re.search(r"--served-model-name\s+(\S+)", command)
                    server = FakeChatServer(model=name.group(1) if name else "model")
                    servers.append(server)
                    port = server.base_url.rsplit(":", 1)[1].split("/")[0]
                    ports["8000"] = port  # later commands talk to the stand-in
                    continue
                dry = block.dry_run or re.search(r"python -m pytest\b", command)
                if dry:
                    command = command.rstrip().rstrip("&").rstrip() + " --help"
                if command.endswith("&") and not command.endswith("&&"):
                    background.append(subprocess.Popen(
                        ["bash", "-c", command[:-1]], cwd=work, env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        start_new_session=True))
                    port_given = re.search(r"--port\s+(\d+)", command)
                    if port_given:
                        _wait_for_port(int(port_given.group(1)), 120)
                    continue
                log = tmp_path / "output.log"  # a file, not a pipe: daemons may inherit it
                with open(log, "w") as output:
                    done = subprocess.run(["bash", "-c", command], cwd=work, env=env,
                                          stdout=output, stderr=subprocess.STDOUT, check=False,
                                          timeout=COMMAND_TIMEOUT_S)
                assert done.returncode == 0, (f"{where}\nexit {done.returncode}\n"
                                              f"{log.read_text()[-4000:]}")
    finally:
        for process in background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        for server in servers:
            server.close()
        subprocess.run(shlex.split(f"adb -P {adb_port} kill-server"), capture_output=True,
                       timeout=30, check=False)
