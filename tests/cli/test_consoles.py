"""The lazy consoles, NO_COLOR, and the plain progress line printed off a terminal."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckptmap.cli._output import console, err_console, make_console, real_console
from ckptmap.cli._progress import PlainProgress, byte_progress, ticking

ROOT = Path(__file__).resolve().parents[2]


def test_a_console_is_a_context_manager() -> None:
    """rich's Live and Progress enter their console: the proxy must forward that."""
    from rich.progress import Progress

    with err_console as inner:
        assert inner is real_console(err_console)
    with Progress(console=err_console, transient=True) as bar:  # the crash of issue 15
        task = bar.add_task("x", total=2)
        bar.advance(task, 2)


def test_real_console_is_made_once() -> None:
    assert real_console(console) is real_console(console)
    assert real_console(console) is not real_console(err_console)
    assert real_console(err_console).stderr


def test_json_output_never_imports_rich() -> None:
    code = (
        "import sys\n"
        "from ckptmap.cli import main\n"
        "try:\n"
        "    main(['inspect', 'fixtures/ffm_v1', '--json'], prog_name='ckptmap')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('rich' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr


@pytest.mark.parametrize(("value", "styled"), [("1", False), ("anything", False), ("", True)])
def test_no_color_drops_every_style(
    value: str, styled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", value)
    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal, as far as rich can tell
    monkeypatch.delenv("TERM", raising=False)
    out = io.StringIO()
    c = make_console()
    c.file = out
    c.print("bold", style="bold red")
    assert ("\x1b[" in out.getvalue()) is styled


def test_off_a_terminal_a_console_is_as_wide_as_its_content() -> None:
    from rich.table import Table

    c = make_console()
    c.file = out = io.StringIO()
    table = Table("name", "dtype")
    table.add_row("k" * 500, "float32")
    c.print(table)
    assert "k" * 500 in out.getvalue()
    assert "…" not in out.getvalue()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


MIB = 1 << 20


def test_plain_progress_line() -> None:
    clock, lines = Clock(), []
    progress = PlainProgress(256 * MIB, label="remap", clock=clock, write=lines.append)
    clock.now += 3.0  # opening the output: not part of the rate
    progress.tick()
    assert lines == ["remap: 0 bytes of 256.0 MiB (0%)"]
    progress(8 * MIB)  # the first piece: the rate is measured from here
    assert progress.line(clock.now) == "remap: 8.0 MiB of 256.0 MiB (3%)"
    for _ in range(4):  # 8 MiB a second
        clock.now += 1.0
        progress(8 * MIB)
    progress.tick()
    assert lines[-1] == "remap: 40.0 MiB of 256.0 MiB (15%), 8.0 MiB/s, about 27 s left"


@pytest.mark.parametrize(
    ("seconds", "text"), [(59.4, "59 s"), (61, "1 min 01 s"), (3 * 3600 + 125, "3 h 02 min")]
)
def test_plain_progress_time_left(seconds: float, text: str) -> None:
    progress = PlainProgress(300, label="remap", clock=lambda: 0.0, write=lambda _: None)
    progress(100)
    progress(100)  # 100 bytes in `seconds`: as long again for the rest
    assert progress.line(seconds).endswith(f"about {text} left")


def test_ticking_writes_a_line_every_period() -> None:
    lines: list[str] = []
    progress = PlainProgress(10, label="remap", write=lines.append)
    with ticking(progress, period=0.05):
        time.sleep(0.32)
        assert 3 <= len(lines) <= 7
    count = len(lines)
    time.sleep(0.15)
    assert len(lines) == count  # stopped with the block


def test_byte_progress_off_a_terminal_is_plain(capsys: pytest.CaptureFixture[str]) -> None:
    with byte_progress(10, label="remap") as progress:
        assert isinstance(progress, PlainProgress)
        progress(10)
    assert capsys.readouterr().err == ""  # shorter than a period


_LINES = [
    "wrote 307 arrays (992.1 MiB of tensors; 307 byte-copied) from a/b.ckpt to c/model.safetensors",
    "",
    "  leading and trailing spaces  ",
    "[bold]not markup[/bold] :smile: http://example.com 1.5e3 'quoted' \"double\" a[0]/b",
    "x" * 500,  # far wider than any terminal
]


@pytest.mark.parametrize("stderr", [False, True])
@pytest.mark.parametrize("line", _LINES)
def test_a_plain_line_off_a_terminal_is_what_rich_would_print(
    line: str, stderr: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ckptmap.cli._output import _LazyConsole

    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    fast, slow = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr" if stderr else "stdout", fast)
    lazy = _LazyConsole(stderr=stderr)
    lazy.print(line)
    assert lazy._console is None  # written without making a rich console
    monkeypatch.setattr(sys, "stderr" if stderr else "stdout", slow)
    rich_console = make_console(stderr=stderr)
    rich_console.print(line)
    assert fast.getvalue() == slow.getvalue() == line + "\n"


@pytest.mark.parametrize("line", ["tab\there", "bell\a", "caf\u00e9", "two\nlines"])
def test_other_text_goes_through_rich(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ckptmap.cli._output import _LazyConsole

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    lazy = _LazyConsole(stderr=False)
    lazy.print(line)
    assert lazy._console is not None


def test_a_forced_terminal_goes_through_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    from ckptmap.cli._output import _LazyConsole

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    lazy = _LazyConsole(stderr=False)
    lazy.print("plain")
    assert lazy._console is not None
