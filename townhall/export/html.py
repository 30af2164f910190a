"""`html`: one self-contained page (no scripts, no external resources) with speaker colours.

Every piece of text goes through `html.escape`, persona colours are accepted only
as `#hex` or a plain CSS colour name, and a Content-Security-Policy forbids scripts,
so a turn saying `<script>` is shown as text and can do nothing.
"""

from __future__ import annotations

import html
import re

from townhall.domain.text import terminal_safe
from townhall.export.common import EDITED, branch_line, by_watcher, load, spoken
from townhall.store import Store

_SAFE_COLOR = re.compile(r"^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]{3,20})$")
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; background: #fdfdfd; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
.motion { font-size: 1.1rem; font-style: italic; }
.meta { color: #666; font-size: .85rem; }
.participants { list-style: none; padding: 0; }
.participants li { margin: .2rem 0; }
.turn { border-left: 4px solid var(--c); padding: .3rem .8rem; margin: .8rem 0; background: #fff; }
.speaker { font-weight: bold; color: var(--c); }
.kind, .status { color: #888; font-size: .8rem; margin-left: .4rem; }
.content { white-space: pre-wrap; margin: .2rem 0 0; }
.result { font-weight: bold; }
.minutes { white-space: pre-wrap; background: #fff; padding: .6rem .8rem; border: 1px solid #ddd; }
"""


def _e(text: object) -> str:
    return html.escape(terminal_safe(str(text)), quote=True)


def render(store: Store, session_id: str, branch: int | None = None) -> str:
    loaded = load(store, session_id, branch)
    record, summary = loaded.record, loaded.record.summary
    colors: dict[str, str] = {}
    for i, persona in enumerate(record.personas):
        color = persona.color if persona.color and _SAFE_COLOR.match(persona.color) else None
        colors[persona.name] = color or _PALETTE[i % len(_PALETTE)]
    default = "#555555"

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(summary.label)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(summary.label)}</h1>",
        f'<p class="motion">Motion: {_e(summary.motion)}</p>',
        f'<p class="meta">Session {_e(summary.id)} · {_e(summary.status)}'
        f" · model {_e(summary.model_name or 'unknown')}"
        + (f" · {_e(where)}" if (where := branch_line(loaded)) else "") + "</p>",
        "<h2>Participants</h2>",
        '<ul class="participants">',
    ]
    for persona in record.personas:
        moderator = " (moderator)" if persona.moderator else ""
        parts.append(
            f'<li style="--c: {colors[persona.name]}"><span class="speaker">{_e(persona.name)}</span>'
            f"{moderator}, {_e(persona.title)}</li>"
        )
    parts += ["</ul>", "<h2>Transcript</h2>"]
    for turn in spoken(loaded.turns):
        color = colors.get(turn.speaker, default)
        kind = "" if turn.kind == "agent" else f'<span class="kind">{_e(turn.kind)}</span>'
        status = '<span class="status">interrupted</span>' if turn.status == "interrupted" else ""
        status += f'<span class="status">{EDITED}</span>' if by_watcher(turn) else ""
        parts.append(
            f'<div class="turn" style="--c: {color}">'
            f'<span class="speaker">{_e(turn.speaker)}</span>{kind}{status}'
            f'<p class="content">{_e(turn.content.strip())}</p></div>'
        )
    outcome = loaded.outcome
    if outcome is not None and outcome.result is not None:
        parts += ["<h2>Outcome</h2>",
                  f'<p class="result">{_e(outcome.announcement or outcome.result)} '
                  f"({outcome.votes_for} for, {outcome.votes_against} against)</p>", '<ul class="votes">']
        parts += [f"<li>{_e(v.agent)}: {_e(v.choice)} (P(for) {v.p_for:.2f})</li>" for v in outcome.votes]
        parts.append("</ul>")
    if outcome is not None and outcome.minutes:
        parts += ["<h2>Minutes</h2>", f'<p class="minutes">{_e(outcome.minutes.strip())}</p>']
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
