"""Rules for untrusted text that more than one layer applies: model output is never markup or
terminal codes, and roleplay narration is never speech."""

from __future__ import annotations

import json
import re

# C0/C1 control characters except tab and newline: a model can emit an ANSI escape,
# and a transcript `cat` to a terminal must not be able to drive it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NARRATION = re.compile(r"(?<![*\w])\*(?!\*)[^*\n]{1,600}?\*(?![*\w])")
_QUOTES = {'"': '"', "“": "”", "'": "'"}


def terminal_safe(text: str) -> str:
    """Untrusted text made safe to print: control characters (ANSI escapes included) become U+FFFD."""
    return _CONTROL.sub("\ufffd", text.replace("\r\n", "\n"))


def strip_narration(text: str) -> str:
    """Drop roleplay `*narration*` and keep the spoken words; unwrap a fully quoted turn.

    `**bold**` is left alone: that is emphasis, not a stage direction.
    """
    text = _NARRATION.sub(" ", text)
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    quoted = re.findall(r"[\"“]([^\"“”]+)[\"”]", text)
    if quoted and not re.sub(r"[\"“][^\"“”]+[\"”]", "", text).strip(" \t\n.,;-—"):
        text = " ".join(q.strip() for q in quoted)
    elif len(text) >= 2 and text[0] in _QUOTES and text.endswith(_QUOTES[text[0]]) and text.count(text[0]) <= 2:
        text = text[1:-1].strip()
    return text


def json_line(value: object) -> str:
    """One JSON value on one line, ending in a newline, safe for every line splitter.

    JSON allows raw U+2028/U+2029 inside strings, but Python's `str.splitlines` and several
    log shippers split lines on them; model text may hold them, so they are escaped.
    """
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"
