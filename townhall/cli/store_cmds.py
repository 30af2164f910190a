"""CLI for the record: `sessions list|show|branches|delete|rename`, `search`, `export`, `import`,
`resume`, and the branch commands `fork` and `edit` (no model needed: they change the record,
and `resume` goes on from the branch they make current).

Every command takes `--db` (default `$TOWNHALL_DB`, else the user data dir). Text a
model wrote is printed through `rich.text.Text` with markup off and control
characters neutralised, never interpreted.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from collections.abc import Sequence
from typing import Annotated, Any, Optional, TextIO, assert_never

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from townhall.domain.branches import TurnTree
from townhall.cli.options import DbOpt, EngineFlags, JsonOpt, engine_options
from townhall.engine.base import Engine
from townhall.paths import write_atomic
from townhall.errors import ConfigError, NotFoundError, TownhallError
from townhall.domain import events as ev
from townhall.domain.text import terminal_safe
from townhall.export.common import EDITED
from townhall.debate.session import SessionResult
from townhall.store import Store
from townhall.store.records import votes_as_dicts
from townhall.domain.turns import WATCHER

sessions_app = typer.Typer(help="List, show, rename and delete recorded town halls.", no_args_is_help=True)


def _console() -> Console:
    return Console(markup=False, highlight=False, emoji=False, soft_wrap=True)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M") if epoch else "-"


def _open(db: Path | None) -> Store:
    return Store.open(db)


BranchOpt = Annotated[
    Optional[int],
    typer.Option("--branch", "-b", min=1, metavar="N",
                 help="Branch number (see `townhall sessions branches ID`); default: the current one."),
]


# -- sessions -------------------------------------------------------------------------
@sessions_app.command("list")
def sessions_list(
    db: DbOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Show at most N sessions.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recorded sessions, newest first (turns on each one's current branch)."""
    with _open(db) as store:
        sessions = store.list_sessions(limit)
    if as_json:
        _echo_json([s.as_dict() for s in sessions])
        return
    console = _console()
    if not sessions:
        console.print(f"No sessions recorded in {store.path} yet.")
        return
    table = Table(box=None, header_style="bold")
    branched = any(s.branch_count > 1 for s in sessions)  # the column only where some session has branches
    columns = ("id", "started", "status", "turns", *(("branch",) if branched else ()), "title / motion", "participants")
    for column in columns:
        table.add_column(column)
    for s in sessions:
        branch = (Text(f"{s.current_branch} of {s.branch_count}" if s.branch_count > 1 else "-"),) if branched else ()
        table.add_row(
            Text(s.id), Text(_when(s.created_at)), Text(s.status), Text(str(s.turns)), *branch,
            Text(terminal_safe(s.label)), Text(terminal_safe(", ".join(s.participants))),
        )
    console.print(table)


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id or a unique prefix of it.")],
    branch: BranchOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One session: its settings, participants and transcript (one branch: the current one, or --branch)."""
    with _open(db) as store:
        record = store.get_session(session_id)
        turns = store.turns(record.id, branch)
        number = record.summary.current_branch if branch is None else branch
        outcome = store.outcome_of(record.id, number)
        stances = store.stances_of(record.id, number)
    if as_json:
        from townhall.export.json_format import turn_out
        from townhall.store.records import stance_as_dict

        _echo_json({**record.as_dict(), "branch": number, "turns": [turn_out(t).model_dump(mode="json") for t in turns],
                    "stances": [stance_as_dict(s) for s in stances],
                    "outcome": outcome.as_dict() if outcome is not None else None})
        return
    console = _console()
    s = record.summary
    console.print(Text(terminal_safe(s.label), style="bold"))
    console.print(Text(f"Motion: {terminal_safe(s.motion)}"))
    end = f" ({s.end_reason})" if s.end_reason else ""
    console.print(Text(f"Session {s.id} · {s.status}{end} · started {_when(s.created_at)} · "
                       f"model {terminal_safe(s.model_name or 'unknown')}", style="dim"))
    console.print(Text("Participants: " + terminal_safe(", ".join(p.name for p in record.personas)), style="dim"))
    if s.branch_count > 1:
        current = " (current)" if number == s.current_branch else f" (current: {s.current_branch})"
        console.print(Text(f"Branch {number} of {s.branch_count}{current} · `townhall sessions branches {s.id}` "
                           "shows them all", style="dim"))
    console.print()
    for turn in turns:
        line = Text()
        line.append(f"{terminal_safe(turn.speaker)}: ", style="bold")
        line.append(terminal_safe(turn.content.strip()))
        if turn.status != "complete":
            line.append(f" [{turn.status}]", style="dim")
        if turn.author == WATCHER:
            line.append(f" [{EDITED}]", style="dim")
        console.print(line)
    if outcome is not None:
        console.print()
        print_outcome(console, outcome.result, outcome.votes_for, outcome.votes_against, outcome.votes,
                      outcome.minutes)


def print_outcome(console: Console, result: str | None, votes_for: int, votes_against: int,
                  votes: Sequence[ev.Vote], minutes: str | None) -> None:
    """The tally, each vote, then the minutes (model words as plain text)."""
    if result is not None:
        console.print(Text(f"Vote: the motion {result}, {votes_for} for and {votes_against} against", style="bold"))
        for vote in votes:
            console.print(Text(f"  {terminal_safe(vote.agent)}: {vote.choice} (P(for) {vote.p_for:.2f})"))
    if minutes:
        console.print()
        console.print(Text(terminal_safe(minutes)))


@sessions_app.command("delete")
def sessions_delete(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id or a unique prefix of it.")],
    db: DbOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a session with its turns and events."""
    with _open(db) as store:
        record = store.get_session(session_id)
        if not yes and not typer.confirm(
            f"Delete session {record.id} ({terminal_safe(record.summary.label)}, {record.summary.turns} turns)?"
        ):
            raise typer.Exit(1)
        store.delete(record.id)
    if as_json:
        _echo_json({"deleted": record.id})
    else:
        typer.echo(f"Deleted session {record.id}.")


@sessions_app.command("rename")
def sessions_rename(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id or a unique prefix of it.")],
    title: Annotated[str, typer.Argument(metavar="TITLE")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a session a title (shown instead of its motion)."""
    with _open(db) as store:
        full = store.rename(session_id, title)
    if as_json:
        _echo_json({"id": full, "title": title.strip()})
    else:
        typer.echo(f"Renamed session {full}.")


# -- search ------------------------------------------------------------------------------
def search_cmd(
    query: Annotated[str, typer.Argument(metavar="QUERY",
        help='FTS5 query: words, "a phrase", OR, NOT, prefix*, speaker:NAME.')],
    db: DbOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N hits.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Search every turn of every session, on every branch (a hit names the branches that hold it)."""
    with _open(db) as store:
        hits = store.search(query, limit)
    if as_json:
        _echo_json([h.as_dict() for h in hits])
        return
    console = _console()
    if not hits:
        console.print(f"No turns match {query!r}.")
        return
    for hit in hits:
        head = Text()
        head.append(hit.session_id, style="cyan")
        where = "" if hit.branches == (1,) else " on branch" + ("es " if len(hit.branches) > 1 else " ") + ", ".join(
            map(str, hit.branches))
        head.append(f" · {terminal_safe(hit.session_label)} · turn {hit.turn_index}{where} · ", style="dim")
        head.append(terminal_safe(hit.speaker), style="bold")
        console.print(head)
        snippet = Text("  " + terminal_safe(hit.snippet))
        for start, end in hit.highlights:
            snippet.stylize("bold reverse", start + 2, end + 2)
        console.print(snippet)


# -- export / import ---------------------------------------------------------------------------
def export_cmd(
    session_id: Annotated[Optional[str], typer.Argument(metavar="[ID]", help="Session id or a unique prefix.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f",
        help="md, json, jsonl, sharegpt, html, txt, or dpo (preference pairs).")] = "md",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE instead of stdout.")] = None,
    all_sessions: Annotated[bool, typer.Option("--all",
        help="Export every session's current branch (jsonl, sharegpt, dpo, md, txt, json).")] = False,
    branch: BranchOpt = None,
    db: DbOpt = None,
) -> None:
    """Export one branch of a session (the current one, or --branch N), or --all.

    Every format writes that branch's path with its vote and stances.
    Turns the watcher edited are marked (`author: "watcher"` in json, jsonl).

    `--format dpo` writes preference pairs for DPO training, one JSON line each:
    the debate so far as `prompt` messages, a turn on the branch as `chosen`,
    and an alternative the same speaker said in its place as `rejected`.
    Degenerate, skipped and empty alternatives are left out.
    """
    from townhall.export import export_all, export_session

    if all_sessions == (session_id is not None):
        raise ConfigError("give a session ID or --all (not both)")
    if all_sessions and branch is not None:
        raise ConfigError("--branch picks one session's branch; it does not work with --all")
    with _open(db) as store:
        text = export_all(store, fmt) if all_sessions else export_session(store, session_id or "", fmt, branch)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output, text)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write the export ({exc.strerror or exc})") from None
    typer.echo(f"Wrote {output}", err=True)


def import_cmd(
    file: Annotated[Path, typer.Argument(metavar="FILE",
        help="A `townhall export --format json` file ('-' for stdin).")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import sessions from a JSON export; each gets a new id."""
    from townhall.export import import_documents

    if str(file) == "-":
        text, source = sys.stdin.read(), "stdin"
    else:
        try:
            text, source = file.read_text(encoding="utf-8"), str(file)
        except FileNotFoundError:
            raise NotFoundError(f"{file}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read ({exc})") from None
    with _open(db) as store:
        ids = import_documents(store, text, source)
    if as_json:
        _echo_json({"imported": ids})
    else:
        for new_id in ids:
            typer.echo(f"Imported session {new_id}")


# -- resume ---------------------------------------------------------------------------------------
class _Printer:
    """Streams a resumed debate to a terminal as `Name: text` lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: ev.Event) -> None:
        self.out.write(self._text(event))
        self.out.flush()

    @staticmethod
    def _text(event: ev.Event) -> str:
        match event:
            case ev.TurnStarted():
                return f"{terminal_safe(event.speaker)}: "
            case ev.TokenStreamed():
                return terminal_safe(event.text)
            case ev.TurnFailed():
                return f" [failed: {terminal_safe(event.error)}]\n"
            case ev.TurnFinished():
                return ("" if event.turn.status == "complete" else f" [{event.turn.status}]") + "\n"
            case ev.SessionEnded():
                return f"-- session {event.session_id} ended: {event.reason}\n"
            case (ev.SessionStarted() | ev.Paused() | ev.Resumed() | ev.StrategyApplied() | ev.StanceMeasured()
                  | ev.OutcomeDecided() | ev.MinutesWritten() | ev.BranchCreated() | ev.BranchSwitched()):
                return ""
            case _:
                assert_never(event)


async def resume_session(
    store: Store,
    session_id: str,
    engine: Engine,
    *,
    turns: int | None = None,
    out: TextIO | None = None,
    ctrl_c: bool = False,
) -> SessionResult:
    """Continue a stored session on `engine`, recording into `store` (the turn budget: `session.turns_left`)."""
    from townhall.debate.session import plan_resume, run_session

    plan = plan_resume(store, session_id, more_turns=turns)
    views = [_Printer(out)] if out is not None else []
    return await run_session(engine, plan, store=store, views=views, ctrl_c=ctrl_c)


@engine_options
def resume_cmd(
    engine_flags: EngineFlags,
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id or a unique prefix.")],
    turns: Annotated[Optional[int],
                     typer.Option("--turns", "-t", min=1, help="Turns to add (default: what max_turns left).")] = None,
    branch: Annotated[Optional[int],
                      typer.Option("--branch", "-b", min=1, metavar="N",
                                   help="Make branch N current first, and go on from its last turn.")] = None,
    db: DbOpt = None,
) -> None:
    """Continue a stopped session with the same participants and settings, on its current branch.

    `--turns N` adds N turns; without it the session gets what its max_turns left.
    `--branch N` switches to branch N first (see `townhall sessions branches ID`).
    Ctrl+C cuts the turn being generated and stops; a second Ctrl+C stops at once.
    """
    from townhall.engine.factory import build_engine
    from townhall.debate.session import plan_resume, run_session

    with _open(db) as store:
        if branch is not None:
            store.switch_branch(session_id, branch)
        plan = plan_resume(store, session_id, more_turns=turns)  # fail fast, before loading a model
        engine = build_engine(engine_flags.config(n_ctx=plan.spec.n_ctx, section=plan.spec.engine))
        views = [_Printer(sys.stdout)]
        result = asyncio.run(run_session(engine, plan, store=store, views=views, ctrl_c=True, close_engine=True))
    if result.reason == "error":
        raise TownhallError(f"session {result.session_id} stopped on an error "
                            f"(see `townhall sessions show {result.session_id}`)")
    if result.stopped_by_user:
        raise typer.Exit(130)


# -- branches: sessions branches, fork, edit ---------------------------------------------------------
_WIDTH = 80


def _first_words(text: str, room: int) -> str:
    words = " ".join(terminal_safe(text).split())
    return words if len(words) <= room else words[: max(room - 1, 0)].rstrip() + "…"


def branch_lines(tree: TurnTree, width: int = _WIDTH) -> list[str]:
    """The branches as a tree, one line each: number (`*` current), how and where it grew,
    its turns, and the first words of its own first turn, cut to fit `width` columns."""
    children: dict[int | None, list[int]] = {}
    for number in tree.numbers():
        parent = tree.branches[number].parent
        children.setdefault(parent if parent in tree.branches else None, []).append(number)
    lines: list[str] = []

    def line(number: int, lead: str, stem: str) -> None:
        branch = tree.branches[number]
        fork = tree.nodes.get(branch.fork) if branch.fork is not None else None
        if branch.parent is None:
            where = branch.reason
        elif fork is None:
            where = f"{branch.reason} of {branch.parent}, from the start"
        else:
            where = f"{branch.reason} of {branch.parent} after #{fork.index}"
        own = tree.own_turns(number)
        mark = " *" if number == tree.current else ""
        head = f"{lead}{number}{mark}  {where}, {len(tree.path(number))} turns · "
        said = f"#{own[0].index} {own[0].speaker}: {own[0].content}" if own else "(nothing said yet)"
        lines.append(head + _first_words(said, max(width - len(head), 12)))
        kids = children.get(number, [])
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            line(kid, stem + ("└─ " if last else "├─ "), stem + ("   " if last else "│  "))

    for root in children.get(None, []):
        line(root, "", "")
    return lines


def _branch_json(tree: TurnTree, number: int) -> dict[str, Any]:
    branch = tree.branches[number]
    fork = tree.nodes.get(branch.fork) if branch.fork is not None else None
    own = tree.own_turns(number)
    return {"number": number, "parent": branch.parent, "reason": branch.reason,
            "fork_index": fork.index if fork is not None else None, "turns": len(tree.path(number)),
            "current": number == tree.current, "created_at": branch.created_at,
            "first_turn": ({"index": own[0].index, "speaker": own[0].speaker, "content": own[0].content}
                           if own else None)}


@sessions_app.command("branches")
def sessions_branches(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id or a unique prefix of it.")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The tree of a session's branches: each one's number (* = current), the branch it grew from and
    after which turn, its turns, and the first words it added."""
    with _open(db) as store:
        full = store.resolve_id(session_id)
        tree = store.tree(full)
    if as_json:
        _echo_json({"session": full, "current": tree.current,
                    "branches": [_branch_json(tree, n) for n in tree.numbers()]})
        return
    typer.echo(f"Branches of session {full} (* = current; `--branch N` picks one):")
    for text in branch_lines(tree):
        typer.echo(text)


def fork_cmd(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id or a unique prefix.")],
    at: Annotated[int, typer.Option("--at", min=0, metavar="N",
        help="The last turn the new branch keeps (#N as shown).")],
    branch: BranchOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a new branch that keeps turns 0..N of a branch (the current one) and make it current.

    No model is needed: `townhall resume ID` then goes on from turn N on the new branch.
    """
    with _open(db) as store:
        full = store.resolve_id(session_id)
        voted = store.outcome_of(full, branch) is not None
        number = store.fork(full, at, branch)
        source = store.tree(full).branches[number].parent
    if as_json:
        _echo_json({"session": full, "branch": number, "parent": source, "at": at})
        return
    typer.echo(f"Made branch {number} of session {full} from branch {source}, keeping turns 0-{at}; it is now "
               f"current: `townhall resume {full}` goes on from turn {at}.")
    _say_unvoted(full, voted)


def _say_unvoted(session_id: str, voted: bool) -> None:
    """The one rule for a path changed after its ballot, said where no model is loaded: a ballot
    belongs to the path it was held on, so the new branch has none until one is held (the TUI,
    with the model at hand, holds it at once)."""
    if voted:
        typer.echo(f"The vote was held on the old path; this branch has none yet: `townhall vote {session_id}` "
                   "holds it.")


def edit_cmd(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id or a unique prefix.")],
    turn: Annotated[int, typer.Argument(metavar="TURN", min=0, help="The turn to edit (#N as shown).")],
    text: Annotated[Optional[str], typer.Option("--text", metavar="T",
        help="The new text (default: open $EDITOR on the turn's text).")] = None,
    branch: BranchOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rewrite what a turn said, as the watcher: a new branch ends at the edited turn and becomes
    current; the original stays as its alternative. `townhall resume ID` goes on from the edit."""
    with _open(db) as store:
        full = store.resolve_id(session_id)
        original = store.turn_at(full, turn, branch)
        if text is None:
            edited = click.edit(original.content)
            text = original.content if edited is None else edited  # None: closed without saving
        voted = store.outcome_of(full, branch) is not None
        number = store.edit_turn(full, turn, text, branch)
    if as_json:
        _echo_json({"session": full, "branch": number, "turn": turn, "speaker": original.speaker})
        return
    typer.echo(f"Made branch {number} of session {full}: turn {turn} ({terminal_safe(original.speaker)}) now says "
               f"your text; it is current, and `townhall resume {full}` goes on from there.")
    _say_unvoted(full, voted)


# -- vote ------------------------------------------------------------------------------------------
@engine_options
def vote_cmd(
    engine_flags: EngineFlags,
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id or a unique prefix.")],
    branch: Annotated[Optional[int],
                      typer.Option("--branch", "-b", min=1, metavar="N",
                                   help="Make branch N current first, and vote on its debate.")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hold the closing ballot on a recorded session's current branch (or --branch N): every participant
    votes from its own view (the stance probe), the moderator announces the result, and the minutes
    are written and stored with that branch."""
    from townhall.engine.factory import build_engine
    from townhall.debate.session import VoteResult, hold_vote

    with _open(db) as store:
        if branch is not None:
            store.switch_branch(session_id, branch)
        spec, _, _ = store.load_for_resume(session_id)  # fail fast, before loading a model
        engine = build_engine(engine_flags.config(n_ctx=spec.n_ctx, section=spec.engine))

        async def vote() -> VoteResult:
            try:
                return await hold_vote(engine, store, session_id)
            finally:
                await engine.aclose()

        result = asyncio.run(vote())
    outcome = result.outcome
    if outcome is None:
        raise TownhallError(f"session {result.session_id}: no participant's stance could be read, so there is no vote")
    if as_json:
        _echo_json({"session": result.session_id, "result": outcome.result, "votes_for": outcome.votes_for,
                    "votes_against": outcome.votes_against, "announcement": outcome.announcement,
                    "votes": votes_as_dicts(outcome.votes),
                    "minutes": result.minutes})
        return
    console = _console()
    console.print(Text(terminal_safe(outcome.announcement)))
    print_outcome(console, outcome.result, outcome.votes_for, outcome.votes_against, outcome.votes, result.minutes)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(sessions_app, name="sessions")
    app.command("fork")(fork_cmd)
    app.command("edit")(edit_cmd)
    app.command("vote")(vote_cmd)
    app.command("search")(search_cmd)
    app.command("export")(export_cmd)
    app.command("import")(import_cmd)
    app.command("resume")(resume_cmd)
