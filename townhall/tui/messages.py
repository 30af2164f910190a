"""Textual messages that carry the scheduler's events and the engine's lifecycle into the TUI.

The scheduler publishes on the app's own event loop; turning each event into a message
keeps widget updates in the app's message order and lets tests record them with
`run_test(message_hook=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from townhall.engine.base import EngineInfo
from townhall.domain.events import Event


@dataclass
class EngineReady(Message):
    """The model is loaded (or the server reached); the debate can start."""

    info: EngineInfo


@dataclass
class EngineFailed(Message):
    """Loading the model or starting the debate failed; `text` is what the user sees."""

    title: str
    text: str


@dataclass
class DebateEvent(Message):
    """Any scheduler event except tokens, which arrive batched as `TokensArrived`."""

    event: Event


@dataclass
class TokensArrived(Message):
    """All the text one turn streamed since the last frame, coalesced to keep redraws cheap."""

    session_id: str
    index: int
    speaker: str
    text: str
    pieces: int


@dataclass
class DebateFinished(Message):
    """The scheduler's `run()` returned (or raised); `error` is the one-line reason if it failed."""

    session_id: str
    reason: str
    error: str | None = None


@dataclass
class ShowError(Message):
    """Ask the app for the error dialog: a title and a copyable one-line reason."""

    title: str
    text: str


@dataclass
class ResumeAfterRetry(Message):
    """The record failed mid-run and a retry wrote everything: the debate goes on from the record."""

    session_id: str
