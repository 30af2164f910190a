"""`townhall run` (a town hall without the TUI) and `townhall agents list|show|import`.

Model text is untrusted: it is printed with control characters neutralised and,
on a terminal, through `rich.text.Text` with markup off, never interpreted.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TextIO, assert_never

import typer
from rich.console import Console
from rich.text import Text

from townhall.domain.text import json_line
from townhall.cli.options import (
    DbOpt,
    EngineFlags,
    InterjectFileOpt,
    JsonOpt,
    PaceOpt,
    engine_options,
    interject_feeds,
    reading_pace,
)
from townhall.domain.text import terminal_safe
from townhall.errors import TownhallError
from townhall.domain import events as ev
from townhall.domain.personas import Persona, PersonaRegistry
from townhall.domain.spec import TownHallSpec, default_spec_path, load_spec, spec_from_data
from townhall.store.records import votes_as_dicts
from townhall.domain.turns import Turn

if TYPE_CHECKING:
    from townhall.store import Store

AgentsDirOpt = Annotated[
    Optional[Path],
    typer.Option("--agents-dir", help="Extra persona folder; adds to and overrides the built-in and user ones."),
]

agents_app = typer.Typer(help="List, show and import personas.", no_args_is_help=True)


def _console(file: TextIO | None = None) -> Console:
    return Console(file=file, markup=False, highlight=False, emoji=False, soft_wrap=True)


# -- building a town hall from a file and flags ------------------------------------------
def build_spec(
    townhall: Path | None,
    *,
    motion: str | None = None,
    agents: str | None = None,
    moderator: str | None = None,
    policy: str | None = None,
    turns: int | None = None,
    seed: int | None = None,
    n_ctx: int | None = None,
    context_strategy: str | None = None,
    max_tokens: int | None = None,
) -> TownHallSpec:
    """A file (or the default town hall) with each given flag replacing its field.

    `--motion` and `--agents` together and no file: a town hall from the flags alone
    (no moderator). Either one alone changes the default town hall, so `--motion`
    alone is debated by the default cast.
    """
    overrides: dict[str, Any] = {
        "motion": motion,
        "participants": [a.strip() for a in agents.split(",") if a.strip()] if agents is not None else None,
        "moderator": moderator,
        "policy": policy,
        "max_turns": turns,
        "seed": seed,
        "n_ctx": n_ctx,
        "context_strategy": context_strategy,
    }
    if townhall is None and motion is not None and agents is not None:
        # A town hall from flags alone; with a moderator it runs as a meeting (the agenda).
        base: dict[str, Any] = {"policy": "agenda"} if moderator else {}
        source = "flags"
    else:
        path = townhall or default_spec_path()
        base = load_spec(path).model_dump(exclude_unset=True)
        source = str(path)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given and source != "flags":
        source += " with the command-line flags"
    if motion is not None and motion.strip() != str(base.get("motion", "")).strip():
        base.pop("title", None)  # the file's title names its own motion, not this one
        base.pop("stances", None)  # and its sides and concerns were about that motion: persona defaults apply
    base.update(given)
    if "participants" in given and base.get("stances"):
        cast = {n.casefold() for n in given["participants"]}
        base["stances"] = {n: s for n, s in base["stances"].items() if n.casefold() in cast}
    if max_tokens is not None:
        base["sampling"] = {**dict(base.get("sampling") or {}), "max_tokens": max_tokens}
    return spec_from_data(base, source)


def cast_of(spec: TownHallSpec, registry: PersonaRegistry) -> list[Persona]:
    names = list(spec.participants)
    if spec.moderator and spec.moderator.casefold() not in {n.casefold() for n in names}:
        names.insert(0, spec.moderator)
    return registry.resolve(names)


# -- output ------------------------------------------------------------------------------
def turn_json(session_id: str, turn: Turn) -> dict[str, Any]:
    return {
        "type": "turn",
        "session": session_id,
        "index": turn.index,
        "speaker": turn.speaker,
        "kind": str(turn.kind),
        "content": turn.content,
        "status": str(turn.status),
        "stats": turn.stats.as_dict() if turn.stats else {},
        "retries": turn.retries,
        "seed": turn.sampling.seed if turn.sampling else None,
        "error": turn.error,
    }


def event_json(event: ev.Event) -> dict[str, Any] | None:
    """One JSON line for `--json`, or None for an event it leaves out (branch changes)."""
    match event:
        case ev.TurnFinished() | ev.TurnFailed():
            return turn_json(event.session_id, event.turn)
        case ev.TokenStreamed():
            return {"type": "token", "session": event.session_id, "index": event.index, "speaker": event.speaker,
                    "text": event.text}
        case ev.TurnStarted():
            return {"type": "turn_started", "session": event.session_id, "index": event.index,
                    "speaker": event.speaker, "kind": str(event.kind)}
        case ev.SessionStarted():
            engine = event.engine
            return {"type": "start", "session": event.session_id, "resumed": event.resumed, "spec": event.spec,
                    "participants": [p.name for p in event.participants],
                    "engine": {"backend": engine.backend, "model": engine.model_name, "n_ctx": engine.n_ctx,
                               "device": engine.device}}
        case ev.StrategyApplied():
            return {"type": "strategy", "session": event.session_id, "agent": event.agent,
                    "strategy": event.strategy, "detail": event.detail}
        case ev.Paused() | ev.Resumed():
            return {"type": type(event).__name__.lower(), "session": event.session_id}
        case ev.StanceMeasured():
            return {"type": "stance", "session": event.session_id, "agent": event.agent, "round": event.round,
                    "turn_index": event.turn_index, "p_for": event.p_for, "method": event.method}
        case ev.OutcomeDecided():
            return {"type": "outcome", "session": event.session_id, "result": event.result,
                    "votes_for": event.votes_for, "votes_against": event.votes_against,
                    "announcement": event.announcement, "votes": votes_as_dicts(event.votes)}
        case ev.MinutesWritten():
            return {"type": "minutes", "session": event.session_id, "text": event.text}
        case ev.SessionEnded():
            return {"type": "end", "session": event.session_id, "reason": event.reason, "turns": event.turns,
                    "error": event.error}
        case ev.BranchCreated() | ev.BranchSwitched():
            return None
        case _:
            assert_never(event)


class JsonLines:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: ev.Event) -> None:
        value = event_json(event)
        if value is not None:
            self.out.write(json_line(value))
            self.out.flush()


class PlainPrinter:
    """Piped output: one `Name: text` line per settled turn (the final, trimmed text)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: ev.Event) -> None:
        line = self._line(event)
        if line is not None:
            self.out.write(line)
            self.out.flush()

    @staticmethod
    def _line(event: ev.Event) -> str | None:
        match event:
            case ev.TurnFinished() | ev.TurnFailed():
                turn = event.turn
                mark = "" if turn.status == "complete" else f" [{turn.status}]"
                return f"{terminal_safe(turn.speaker)}: {terminal_safe(turn.content)}{mark}\n"
            case ev.OutcomeDecided():
                return f"-- vote: {event.votes_for} for, {event.votes_against} against: {event.result}\n"
            case ev.MinutesWritten():
                return f"-- minutes:\n{terminal_safe(event.text)}\n"
            case ev.SessionEnded():
                tail = f": {event.error}" if event.error else ""
                return f"-- session {event.session_id} ended: {event.reason}{tail}\n"
            case (ev.SessionStarted() | ev.TurnStarted() | ev.TokenStreamed() | ev.Paused() | ev.Resumed()
                  | ev.StrategyApplied() | ev.StanceMeasured() | ev.BranchCreated() | ev.BranchSwitched()):
                return None
            case _:
                assert_never(event)


class ColourPrinter:
    """A terminal: each speaker's name in their colour, their words streamed as they come."""

    def __init__(self, console: Console, personas: list[Persona]) -> None:
        self.console = console
        self.colours = {p.name: p.color or "" for p in personas}
        self.emoji = {p.name: p.emoji or "" for p in personas}

    def __call__(self, event: ev.Event) -> None:
        self._print(event)
        self.console.file.flush()

    def _print(self, event: ev.Event) -> None:
        c = self.console
        match event:
            case ev.SessionStarted():
                c.print(Text(f"{event.spec.get('title') or 'Town hall'}: {event.spec.get('motion', '')}", style="bold"))
                c.print(Text(f"{event.engine.model_name} · {event.engine.device} · n_ctx {event.engine.n_ctx}",
                             style="dim"))
            case ev.TurnStarted():
                colour = self.colours.get(event.speaker) or ("italic" if event.kind == "audience" else "")
                badge = f"{self.emoji.get(event.speaker, '')} " if self.emoji.get(event.speaker) else ""
                c.print(Text(f"{badge}{terminal_safe(event.speaker)}:", style=f"bold {colour}".strip()), end=" ")
            case ev.TokenStreamed():
                c.print(Text(terminal_safe(event.text), style=self.colours.get(event.speaker) or ""), end="")
            case ev.TurnFinished():
                if event.turn.status != "complete":
                    c.print(Text(f" [{event.turn.status}]", style="dim"), end="")
                c.print()
            case ev.TurnFailed():
                c.print(Text(f" [failed: {terminal_safe(event.error)}]", style="red"))
            case ev.StrategyApplied():
                c.print(Text(f"  ({event.strategy}: {terminal_safe(event.detail)})", style="dim"))
            case ev.StanceMeasured():
                c.print(Text(f"  ({terminal_safe(event.agent)}: {event.p_for:.0%} for)", style="dim"))
            case ev.OutcomeDecided():
                c.print(Text(f"-- vote: {event.votes_for} for, {event.votes_against} against: "
                             f"the motion {event.result}", style="bold"))
            case ev.MinutesWritten():
                c.print(Text(terminal_safe(event.text)))
            case ev.SessionEnded():
                c.print(Text(f"-- session {event.session_id} ended: {event.reason}", style="dim"))
            case ev.Paused() | ev.Resumed() | ev.BranchCreated() | ev.BranchSwitched():
                pass
            case _:
                assert_never(event)


def _printer(out: TextIO, as_json: bool, personas: list[Persona]) -> Any:
    """How `run` shows the debate: JSON lines, colour on a terminal, plain text into a pipe."""
    if as_json:
        return JsonLines(out)
    if out.isatty():
        return ColourPrinter(_console(out), personas)
    return PlainPrinter(out)


def _record_failed(store: Store, session_id: str, error: TownhallError, json_out: TextIO | None) -> None:
    """The record failed mid-run: keep what it could not write in a file, say so in one line."""
    from townhall.cli.unsaved import keep_unsaved

    line, kept = keep_unsaved(store, session_id, error)
    if json_out is not None:
        json_out.write(json_line({"type": "error", "session": session_id, "error": line,
                                  "unsaved": str(kept) if kept else None}))
    raise TownhallError(line)


# -- running ----------------------------------------------------------------------------
@engine_options
def run_cmd(
    engine_flags: EngineFlags,
    townhall: Annotated[Optional[Path],
                        typer.Argument(metavar="[TOWNHALL.toml]",
                                       help="Town-hall file (default: the shipped default).")] = None,
    motion: Annotated[Optional[str],
                      typer.Option("--motion",
                                   help="The question debated (alone: by the default town hall's cast).")] = None,
    agents: Annotated[Optional[str], typer.Option("--agents", help="Comma-separated persona names.")] = None,
    moderator: Annotated[Optional[str], typer.Option("--moderator", help="Persona who moderates.")] = None,
    policy: Annotated[Optional[str],
                      typer.Option("--policy", help="round_robin, random, moderator or mention.")] = None,
    turns: Annotated[Optional[int], typer.Option("--turns", "-t", min=1, help="Stop after N turns.")] = None,
    seed: Annotated[Optional[int],
                    typer.Option("--seed", min=0, help="Fixed seed: the same model gives the same transcript.")] = None,
    context_strategy: Annotated[Optional[str],
                                typer.Option("--context-strategy", help="truncate, summarize or error.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=1, help="Most tokens per turn.")] = None,
    agents_dir: AgentsDirOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
    interject_file: InterjectFileOpt = None,
    pace: PaceOpt = None,
) -> None:
    """Run a town hall without the TUI, streaming it to the terminal (or JSON lines).

    Ctrl+C cuts the turn being generated (its words are kept) and stops; a second
    Ctrl+C stops at once. Every town hall is recorded (--db, else $TOWNHALL_DB, else
    the user data directory). With --interject-file, each save of that file (from any
    editor) is interjected from the audience; a participant it names answers next.
    Flat out unless --pace WPM holds each finished turn for its reading time.
    """
    from townhall.engine.factory import build_engine
    from townhall.debate.session import SessionPlan, run_session
    from townhall.store import Store

    spec = build_spec(
        townhall, motion=motion, agents=agents, moderator=moderator, policy=policy, turns=turns,
        seed=seed, n_ctx=engine_flags.n_ctx, context_strategy=context_strategy, max_tokens=max_tokens,
    )
    personas = cast_of(spec, PersonaRegistry.default(agents_dir))  # fail fast, before loading a model
    feeds = interject_feeds(interject_file)
    reading = reading_pace(pace)
    engine = build_engine(engine_flags.config(n_ctx=spec.n_ctx, section=spec.engine))
    out = sys.stdout
    printer = _printer(out, as_json, personas)
    with Store.open(db) as store:
        result = asyncio.run(
            run_session(engine, SessionPlan(spec, personas), store=store, views=[printer], ctrl_c=True,
                        close_engine=True, feeds=feeds, pace=reading)
        )
        if result.record_error is not None:
            _record_failed(store, result.session_id, result.record_error, out if as_json else None)
    if result.reason == "error":
        if as_json:
            out.write(json_line({"type": "error", "session": result.session_id, "error": result.error}))
        raise TownhallError(result.error or "the town hall stopped on an error")
    if result.stopped_by_user:
        raise typer.Exit(130)


# -- agents -------------------------------------------------------------------------------
@agents_app.command("list")
def agents_list(agents_dir: AgentsDirOpt = None, as_json: JsonOpt = False) -> None:
    """List every persona: built-in, yours, and --agents-dir."""
    registry = PersonaRegistry.default(agents_dir)
    if as_json:
        rows = [{"name": p.name, "title": p.title, "moderator": p.moderator, "source": str(registry.source(p.name))}
                for p in registry.all()]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    console = _console()
    for p in registry.all():
        line = Text(f"{p.emoji + ' ' if p.emoji else ''}{p.name}", style=f"bold {p.color or ''}".strip())
        line.append(f" - {p.title}" + (" (moderator)" if p.moderator else ""))
        console.print(line)


@agents_app.command("show")
def agents_show(
    name: Annotated[str, typer.Argument(help="Persona name (any case).")],
    agents_dir: AgentsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one persona in full."""
    registry = PersonaRegistry.default(agents_dir)
    persona = registry.get(name)
    if as_json:
        data = persona.model_dump(mode="json")
        data["source"] = str(registry.source(name))
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    console = _console()
    console.print(Text(f"{persona.emoji + ' ' if persona.emoji else ''}{persona.name}", style="bold"),
                  Text(f"- {persona.title}"))
    console.print(Text(f"file: {registry.source(name)}", style="dim"))
    console.print(Text(f"\nBio: {persona.bio}\nStyle: {persona.style}\nTalkativeness: {persona.talkativeness}"))
    for example in persona.examples:
        console.print(Text(f'  e.g. "{example}"', style="italic"))
    overrides = persona.sampling.model_dump(exclude_none=True)
    if overrides:
        console.print(Text(f"Sampling: {overrides}", style="dim"))


@agents_app.command("import")
def agents_import(
    file: Annotated[Path, typer.Argument(help="A SillyTavern/Tavern card: .json or .png.")],
    agents_dir: Annotated[Optional[Path], typer.Option("--agents-dir",
        help="Write here instead of your persona folder.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a persona file of the same name.")] = False,
) -> None:
    """Import a character card as a persona in your own folder."""
    from townhall.domain.cards import import_card

    persona, target = import_card(file, agents_dir, force=force)
    typer.echo(f"Imported {persona.name} -> {target}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("run")(run_cmd)
    app.add_typer(agents_app, name="agents")
