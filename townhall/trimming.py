"""Cleaning a generated turn so it is one persona's words and nothing after them.

Stop strings end most turns, but a base model can still run on: into another
speaker's tag the stops did not know, into markup or code (seed 000's "irrelevant
output"), or off the end of `max_tokens` mid-sentence. Trimming happens once per
turn, on the whole text, after streaming; what streamed is shown live and replaced
by the trimmed content when the turn settles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# A line that starts like a transcript tag ("Mayor Lee: ...", "User:"): the model
# has started speaking as someone else.
_TAG_LINE = re.compile(r"^\s*[A-Z][\w .'\-]{0,39}:(\s|$)")
# Lines that begin code, markup or end-of-text debris instead of speech.
_DEBRIS_LINE = re.compile(
    r"^\s*(```|~~~|\\begin\{|\\end\{|</?[a-zA-Z_|][^>]*>|\[/?[A-Z_]{2,}\]|#include\b|import \w|from \w+ import\b"
    r"|def \w+\(|class \w+[:(]|[{}\[\]]\s*$|\$ |>>> )"
)
# End-of-turn markers a model may print literally instead of emitting the token.
_INLINE_MARKERS = ("[EOS]", "<EOS>", "<eos>", "</s>", "<end_of_turn>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>")
_SENTENCE_END = re.compile(r"""[.!?…][)"'”’\]]*(?=\s|$)|[\U0001F300-\U0001FAFF\u2600-\u27BF](?=\s|$)""")
_WORD = re.compile(r"\w", re.UNICODE)
# Stage directions a base model writes instead of speech: "(laughing)", "*nods*", "[applause]".
_STAGE = re.compile(r"^\s*(\([^()\n]{0,80}\)|\*[^*\n]{1,80}\*|\[[^\]\n]{0,80}\])[\s:,.-]*")


def trim_turn(
    text: str,
    *,
    finish_reason: str = "stop",
    names: Iterable[str] = (),
    markers: Sequence[str] = (),
) -> str:
    """Return `text` cut to the speaker's own words.

    `names` are the participants' tags (a dangling partial tag like "\\nBo" for
    "Bob:" is removed); `markers` are the engine's end-of-sequence strings, cut
    wherever they appear. An unfinished last sentence is dropped only when the
    turn ran out of tokens (`finish_reason == "length"`), and only when a whole
    sentence remains.
    """
    for marker in (*_INLINE_MARKERS, *markers):
        if marker:
            at = text.find(marker)
            if at != -1:
                text = text[:at]
    text = _cut_foreign_lines(text)
    text = _drop_dangling_tag(text, tuple(names))
    text = _drop_stage_directions(text)
    text = text.strip()
    if finish_reason == "length":
        text = _drop_unfinished_sentence(text)
    return text.strip()


def _cut_foreign_lines(text: str) -> str:
    """Keep lines up to the first blank-line break, tag line or code/markup line."""
    lines = text.split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        if i > 0 and (_TAG_LINE.match(line) or _DEBRIS_LINE.match(line)):
            break
        if i == 0 and _DEBRIS_LINE.match(line):
            break
        if not line.strip() and kept and any(k.strip() for k in kept):
            break  # a paragraph break ends the turn: what follows drifts
        kept.append(line)
    return "\n".join(kept)


def _drop_dangling_tag(text: str, names: tuple[str, ...]) -> str:
    """Remove a last line that is the start of someone's `Name:` tag."""
    head, sep, last = text.rpartition("\n")
    if not sep:
        return text
    stub = last.strip()
    if not stub:
        return head
    for name in names:
        tag = name + ":"
        if tag.startswith(stub) or stub.startswith(tag):
            return head
    return text


def _drop_stage_directions(text: str) -> str:
    """Leading stage directions are not speech; a turn made only of them is empty."""
    while match := _STAGE.match(text):
        text = text[match.end() :]
    return text


def _drop_unfinished_sentence(text: str) -> str:
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return text
    cut = ends[-1].end()
    if cut >= len(text.rstrip()):
        return text
    return text[:cut]


def has_words(text: str) -> bool:
    return bool(_WORD.search(text))


def normalise(text: str) -> str:
    """Compare turns ignoring case, spacing and punctuation at the edges."""
    return re.sub(r"\s+", " ", text).strip().strip(".!?…,;:-").casefold()


def is_degenerate(text: str, earlier: Iterable[str]) -> bool:
    """Empty, wordless, or a verbatim repeat of an earlier turn."""
    if not has_words(text):
        return True
    key = normalise(text)
    return any(key == normalise(prev) for prev in earlier if prev)
