"""Terminal output for tasks.py: progress for long work (rich, or plain lines for logs). rich is imported
where it draws, so a task that fails on its arguments never loads it."""

from __future__ import annotations

import sys
from collections import deque

from kiln.errors import printable
from kiln.events import Event


class PlainProgress:
    """One line per step and per finished download; all build output passes through."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.last_wait = quiet, ""

    def __call__(self, event: Event) -> None:
        if event.kind == "download":
            if event.total and event.current >= event.total:
                print(f"  downloaded {event.text} ({event.total / 1e6:.0f} MB)", flush=True)
        elif event.kind == "step":
            print(f"[{event.current}/{event.total}] {event.text}", flush=True)
        elif event.kind == "wait":
            if event.text != self.last_wait and event.current % 5 == 0:
                print(event.text, flush=True)
            self.last_wait = event.text
        elif event.kind == "phase" or (event.kind == "log" and not self.quiet):
            print(("  " if event.kind == "log" else "") + event.text, flush=True)

    def close(self, failed: bool = False) -> None:
        """Plain mode already printed everything."""


class RichProgress:
    """A live view: build steps, a bar per download, the latest output line under a spinner."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.console = Console(stderr=True)
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                             console=self.console, transient=True)
        self.status = self.console.status("")
        self.tasks, self.tail = {}, deque(maxlen=15)
        self.bars.start()

    def __call__(self, event: Event) -> None:
        if event.kind == "download":
            self._download(event)
        elif event.kind == "step":
            self.console.print(f"[bold]{event.current}/{event.total}[/] {event.text[:110]}", markup=True,
                               highlight=False)
        elif event.kind == "phase":
            self.console.print(event.text, highlight=False)
        elif event.kind == "wait":
            self.bars.update(self._log_task(), description=f"  {event.text}")
        elif event.kind == "log":
            self.tail.append(event.text)
            self.bars.update(self._log_task(), description=f"  {event.text.strip()[:100]}")

    def _download(self, event: Event) -> None:
        task = self.tasks.get(event.text)
        if task is None:
            task = self.tasks[event.text] = self.bars.add_task(event.text[:48], total=event.total or None)
        self.bars.update(task, completed=event.current)
        if event.total and event.current >= event.total:
            self.bars.remove_task(task)

    def _log_task(self):
        if "__log__" not in self.tasks:
            self.tasks["__log__"] = self.bars.add_task("", total=None)
        return self.tasks["__log__"]

    def close(self, failed: bool = False) -> None:
        self.bars.stop()
        if failed and self.tail:
            self.console.print("last output:", style="bold")
            for line in self.tail:
                self.console.print("  " + line, highlight=False, markup=False)


def progress(plain: bool, quiet: bool = False):
    return PlainProgress(quiet) if plain or quiet or not sys.stderr.isatty() else RichProgress()


def table(headers, rows, numeric=(), wrap=()) -> None:
    """A table on stdout (plain columns when stdout is not a terminal); columns in wrap fold long text."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    view = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for index, header in enumerate(headers):
        view.add_column(header, justify="right" if index in numeric else "left", no_wrap=index not in wrap,
                        overflow="fold")
    for row in rows:
        view.add_row(*(Text(_cell(cell)) for cell in row))
    Console(width=200 if not sys.stdout.isatty() else None).print(view)


def _cell(value) -> str:
    """Cells are data: "[...]" is not markup, and escape sequences are shown, not obeyed (lines kept)."""
    return "\n".join(printable(line) for line in str(value).split("\n"))
