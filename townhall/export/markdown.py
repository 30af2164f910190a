"""`md`: a readable transcript with the motion, the participants and each turn.

Everything the model (or a persona file) wrote is backslash-escaped, so a turn
containing `<script>`, `[link](…)` or `# heading` renders as the literal text.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from townhall.domain.text import terminal_safe
from townhall.export.common import EDITED, branch_line, by_watcher, load, spoken
from townhall.store import Store

_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&=])")


def escape(text: str) -> str:
    """Escape CommonMark punctuation so untrusted text renders as itself."""
    return _SPECIAL.sub(r"\\\1", terminal_safe(text))


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render(store: Store, session_id: str, branch: int | None = None) -> str:
    loaded = load(store, session_id, branch)
    record, summary = loaded.record, loaded.record.summary
    out = [f"# {escape(summary.label)}", ""]
    out += [f"**Motion:** {escape(summary.motion)}", ""]
    out += [
        f"- Session: `{terminal_safe(summary.id).replace('`', '')}`",
        f"- Started: {_when(summary.created_at)}",
        f"- Status: {escape(summary.status)}" + (f" ({escape(summary.end_reason)})" if summary.end_reason else ""),
        f"- Model: {escape(summary.model_name or 'unknown')}"
        + (f" (sha256 {record.model_sha256[:12]})" if record.model_sha256 else ""),
        *([f"- {where}"] if (where := branch_line(loaded)) else []),
        "",
        "## Participants",
        "",
    ]
    for persona in record.personas:
        role = " (moderator)" if persona.moderator else ""
        out.append(f"- **{escape(persona.name)}**{role}, {escape(persona.title)}")
    out += ["", "## Transcript", ""]
    for turn in spoken(loaded.turns):
        tag = "" if turn.kind == "agent" else f" ({turn.kind})"
        cut = " *(interrupted)*" if turn.status == "interrupted" else ""
        cut += f" *({EDITED})*" if by_watcher(turn) else ""
        out.append(f"**{escape(turn.speaker)}**{tag}:{cut}")
        out.append("")
        paragraphs = [escape(line) for line in turn.content.strip().split("\n")]
        out.append("  \n".join(paragraphs))
        out.append("")
    outcome = loaded.outcome
    if outcome is not None and outcome.result is not None:
        out += ["## Outcome", "", f"**{escape(outcome.announcement or outcome.result)}** "
                f"({outcome.votes_for} for, {outcome.votes_against} against)", ""]
        out += [f"- {escape(v.agent)}: {v.choice} (P(for) {v.p_for:.2f})" for v in outcome.votes]
        out.append("")
    if outcome is not None and outcome.minutes:
        out += ["## Minutes", "", "  \n".join(escape(line) for line in outcome.minutes.strip().split("\n")), ""]
    return "\n".join(out)
