"""How a generate run shows itself: a live bar on a terminal, one plain line per conversation when piped.

Both views print the same summary at the end. Topic words come from a user's file
and are printed as plain text (no Rich markup, control characters neutralised).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from townhall.domain.text import terminal_safe
from townhall.generate.runner import Outcome, Reporter, Summary


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def summary_lines(summary: Summary) -> list[str]:
    """The closing report: written, dropped by reason, skipped, speed, time, and how it ended."""
    noun = "conversation" if summary.written == 1 else "conversations"
    lines = [f"written: {summary.written} {noun} to {summary.out} ({summary.format})"]
    dropped = sum(summary.dropped.values())
    if dropped:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.dropped.items()))
        lines.append(f"dropped: {dropped} ({reasons})")
    else:
        lines.append("dropped: 0")
    if summary.skipped:
        lines.append(f"skipped: {summary.skipped} topics already done in this output")
    lines.append(
        f"tokens: {summary.tokens} at {summary.tokens_per_s:.1f} tok/s; elapsed {_duration(summary.elapsed_s)}"
    )
    if summary.aborted:
        lines.append(f"aborted: {summary.aborted}")
    elif summary.stopped:
        lines.append("stopped: conversations in progress were kept in the store, not written")
    return lines


def at_a_time(parallel: int) -> str:
    return f"; {parallel} at a time" if parallel > 1 else ""


def stopping_text(in_flight: int) -> str:
    if in_flight <= 1:
        return "stopping: the conversation in progress will not be written; finished ones are"
    return f"stopping: the {in_flight} conversations in progress will not be written; finished ones are"


def outcome_text(outcome: Outcome) -> str:
    topic = terminal_safe(outcome.topic)
    if outcome.written:
        rate = outcome.tokens / outcome.seconds if outcome.seconds > 0 else 0.0
        return (f"{topic}: written ({outcome.lines} lines, {outcome.turns} turns, "
                f"{outcome.tokens} tokens, {rate:.1f} tok/s)")
    detail = f" ({outcome.detail})" if outcome.detail else ""
    return f"{topic}: dropped, {outcome.reason}{detail}"


class PlainReporter(Reporter):
    """Lines for logs and pipes: one per conversation, then the summary."""

    def __init__(self, stream: TextIO, *, count_written: bool = False) -> None:
        self.stream = stream
        self.count_written = count_written
        self.total: int | None = None

    def _say(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def begin(self, *, total: int | None, skipped: int, topics: int, out: Path, parallel: int = 1) -> None:
        self.total = total
        plan = "until stopped" if total is None else f"{total} to go"
        done = f", {skipped} already done" if skipped else ""
        self._say(f"generate: {topics} topics{done}; {plan}{at_a_time(parallel)}; writing to {out}")

    def conversation(self, outcome: Outcome, summary: Summary) -> None:
        position = summary.written if self.count_written else summary.done
        of = f"/{self.total}" if self.total is not None else ""
        self._say(f"[{position}{of}] {outcome_text(outcome)}")

    def stopping(self, in_flight: int = 1) -> None:
        self._say(stopping_text(in_flight))

    def end(self, summary: Summary) -> None:
        for line in summary_lines(summary):
            self._say(line)


class RichReporter(Reporter):
    """A live bar (conversations done, dropped, tokens/s, ETA) with finished topics logged above it."""

    def __init__(self, console: Console, *, count_written: bool = False) -> None:
        self.console = console
        self.count_written = count_written  # --count: the bar counts written conversations
        self._tokens = 0
        self._began = time.monotonic()
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("dropped {task.fields[dropped]}"),
            TextColumn("{task.fields[tps]:.1f} tok/s"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task: TaskID | None = None

    def begin(self, *, total: int | None, skipped: int, topics: int, out: Path, parallel: int = 1) -> None:
        done = f", {skipped} already done" if skipped else ""
        self.console.print(Text(f"generate: {topics} topics{done}{at_a_time(parallel)}; writing to {out}"))
        self._began = time.monotonic()
        self._progress.start()
        self._task = self._progress.add_task("generating", total=total, dropped=0, tps=0.0)

    def turn(self, tokens: int) -> None:
        self._tokens += tokens
        if self._task is not None:
            elapsed = time.monotonic() - self._began
            self._progress.update(self._task, tps=self._tokens / elapsed if elapsed > 0 else 0.0)

    def conversation(self, outcome: Outcome, summary: Summary) -> None:
        mark = "✓" if outcome.written else "✗"
        self._progress.console.print(Text(f"{mark} {outcome_text(outcome)}"))
        if self._task is not None:
            completed = summary.written if self.count_written else summary.done
            self._progress.update(self._task, completed=completed, dropped=sum(summary.dropped.values()),
                                  tps=summary.tokens_per_s)

    def stopping(self, in_flight: int = 1) -> None:
        self._progress.console.print(Text(stopping_text(in_flight)))

    def end(self, summary: Summary) -> None:
        self._progress.stop()
        for line in summary_lines(summary):
            self.console.print(Text(line))


def make_reporter(stream: TextIO, *, count_written: bool = False, tty: bool | None = None) -> Reporter:
    """The bar on a terminal, plain lines otherwise."""
    is_tty = stream.isatty() if tty is None else tty
    if is_tty:
        console = Console(file=stream, markup=False, highlight=False, emoji=False)
        return RichReporter(console, count_written=count_written)
    return PlainReporter(stream, count_written=count_written)
