"""The output file and its ledger: append one conversation at a time, durably, and remember which.

Each finished conversation is appended to the output in one write, then flushed and
fsynced, so a run that is stopped (or killed) keeps every conversation it finished.
The ledger beside it (`OUT.ledger`, JSON lines) records each topic written or
dropped with the byte offset the output reached; that is what makes a re-run with
the same config and output skip the topics already done. Ledger entries beyond the
output's current size (the output was truncated or replaced) are not trusted.
Each entry also names the output's shape (one line per conversation with a named
assistant, one per speaker, or a transcript), so one file never mixes two shapes.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from townhall.errors import ConfigError, RecordError
from townhall.store.recorder import write_cause

LEDGER_SUFFIX = ".ledger"


class LedgerEntry(BaseModel):
    """One line of the ledger: what happened to one attempt at one topic."""

    model_config = ConfigDict(extra="ignore")

    fingerprint: str
    format: str
    topic: str
    attempt: int
    outcome: Literal["written", "dropped"]
    reason: str | None = None
    session_id: str
    seed: int | None = None
    lines: int = 0
    end: int = 0  # output size in bytes once this entry's conversation was appended
    at: float = 0.0
    shape: str | None = None  # None: written before shapes were recorded (one line per speaker)

    def shape_or_legacy(self) -> str:
        return self.shape or ("transcript" if self.format == "txt" else "per-speaker")


def ledger_path(out: Path) -> Path:
    return out.with_name(out.name + LEDGER_SUFFIX)


def describe_shape(shape: str) -> str:
    """`conversation:Teacher` -> "one line per conversation (assistant: Teacher)", for error lines."""
    kind, _, assistant = shape.partition(":")
    if kind == "conversation":
        return f"one line per conversation (assistant: {assistant})"
    if kind == "per-speaker":
        return "one line per speaker (--per-speaker)"
    return "transcripts"


def _append_durably(path: Path, data: bytes) -> int:
    """Append `data` in one write, flush and fsync; return the file size after it. A write that
    fails (a full disk) is the run's failure (`RecordError`, naming the file and the cause)."""
    try:
        with path.open("ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            return handle.tell()
    except OSError as error:
        raise RecordError(path, write_cause(error)) from None


class OutputFile:
    """The conversations file of one generate run, with the ledger that makes it resumable."""

    def __init__(self, path: Path, fmt: str, fingerprint: str, shape: str | None = None) -> None:
        """`shape` names what a conversation becomes (`conversation:Teacher`, `per-speaker`,
        `transcript`); None: whatever the format's legacy shape was."""
        self.path = Path(path)
        self.format = fmt
        self.fingerprint = fingerprint
        self.shape = shape or ("transcript" if fmt == "txt" else "per-speaker")
        self.ledger = ledger_path(self.path)
        self.entries: list[LedgerEntry] = []
        self._load()

    def _load(self) -> None:
        if self.path.exists() and not self.path.is_file():
            raise ConfigError(f"--out {self.path}: is not a regular file")
        if not self.path.parent.is_dir():
            raise ConfigError(f"--out {self.path}: the folder {self.path.parent} does not exist")
        size = self.path.stat().st_size if self.path.is_file() else 0
        if not self.ledger.is_file():
            return
        trusted: list[LedgerEntry] = []
        stale = False
        for number, line in enumerate(self.ledger.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = LedgerEntry.model_validate_json(line)
            except ValidationError:
                stale = True  # a torn last line from a killed run; the output decides
                continue
            if entry.end > size:
                stale = True
                continue
            trusted.append(entry)
        formats = {e.format for e in trusted}
        if formats and self.format not in formats:
            raise ConfigError(
                f"--out {self.path} already holds {', '.join(sorted(formats))} conversations; "
                f"write {self.format} to another file"
            )
        shapes = {e.shape_or_legacy() for e in trusted if e.format == self.format}
        if shapes and self.shape not in shapes:
            raise ConfigError(
                f"--out {self.path} already holds {describe_shape(sorted(shapes)[0])}; this run writes "
                f"{describe_shape(self.shape)}: use the same settings or write to another file"
            )
        self.entries = trusted
        if stale:
            self._rewrite_ledger()

    def _rewrite_ledger(self) -> None:
        tmp = self.ledger.with_name(self.ledger.name + ".tmp")
        tmp.write_text("".join(e.model_dump_json() + "\n" for e in self.entries), encoding="utf-8")
        os.replace(tmp, self.ledger)

    # -- what is done ------------------------------------------------------------------
    def _mine(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.fingerprint == self.fingerprint]

    def done_topics(self) -> set[str]:
        """Topics this config already wrote to this output (casefolded)."""
        return {e.topic.casefold() for e in self._mine() if e.outcome == "written"}

    def attempts(self, topic: str) -> int:
        """How many times this config tried `topic` here: the next attempt gets a fresh seed."""
        key = topic.casefold()
        return sum(1 for e in self._mine() if e.topic.casefold() == key)

    def written_count(self) -> int:
        return sum(1 for e in self._mine() if e.outcome == "written")

    def dropped_counts(self) -> Counter[str]:
        return Counter(e.reason or "dropped" for e in self._mine() if e.outcome == "dropped")

    # -- recording ---------------------------------------------------------------------
    def _record(self, entry: LedgerEntry) -> None:
        _append_durably(self.ledger, (entry.model_dump_json() + "\n").encode("utf-8"))
        self.entries.append(entry)

    def append(self, text: str, *, topic: str, attempt: int, session_id: str, seed: int | None) -> LedgerEntry:
        """Write one conversation's rendered text, then note it in the ledger."""
        data = text.encode("utf-8")
        end = _append_durably(self.path, data)
        entry = LedgerEntry(
            fingerprint=self.fingerprint, format=self.format, topic=topic, attempt=attempt, outcome="written",
            session_id=session_id, seed=seed, lines=text.count("\n"), end=end, at=time.time(), shape=self.shape,
        )
        self._record(entry)
        return entry

    def drop(self, *, topic: str, attempt: int, reason: str, session_id: str, seed: int | None) -> LedgerEntry:
        """Note a dropped conversation: nothing reaches the output, the attempt still counts."""
        size = self.path.stat().st_size if self.path.is_file() else 0
        entry = LedgerEntry(
            fingerprint=self.fingerprint, format=self.format, topic=topic, attempt=attempt, outcome="dropped",
            reason=reason, session_id=session_id, seed=seed, end=size, at=time.time(), shape=self.shape,
        )
        self._record(entry)
        return entry

