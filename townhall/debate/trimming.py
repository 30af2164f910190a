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

from townhall.domain.text import strip_narration

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


# -- speaker tags, leaked instructions and roleplay narration --------------------
# Instruct models, small ones most, copy the `Name: text` lines they were shown:
# a turn opens with its own tag, with the previous speaker's ("Priya: Walt: ..."),
# or with a chat role word. Roleplay-trained cards add `*narration*` around speech.
ROLE_WORDS = ("Assistant", "User", "System", "Moderator", "Speaker", "Audience", "Narrator", "AI", "Human")


def _tag_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    alternatives = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
    if not alternatives:
        return None
    joined = "|".join(re.escape(n) for n in alternatives)
    # "Walt:", "**Walt:**", "Walt (hardware store):", "[Walt]:" at the very start.
    return re.compile(
        rf"^\s*[*_\[]*(?P<name>{joined})[*_\]]*(\s*\([^()\n]{{0,60}}\))?\s*[*_]*:[*_]*\s*", re.IGNORECASE
    )


def strip_leading_tags(text: str, speaker: str, names: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """Remove every `Name:` tag the turn opens with; return the text and the other speakers named.

    The speaker's own tag is just noise. Another participant's tag (or a chat
    role word) is impersonation: the tag goes, and when nothing is left after
    it the turn is empty, so the caller resamples it.
    """
    pattern = _tag_pattern([speaker, *names, *ROLE_WORDS])
    if pattern is None:
        return text, ()
    others: list[str] = []
    while match := pattern.match(text):
        name = match.group("name")
        if name.casefold() != speaker.casefold():
            others.append(name)
        text = text[match.end() :]
    return text, tuple(others)


def cut_inline_tags(text: str, speaker: str, names: Iterable[str]) -> str:
    """Cut the turn where another participant's `Name:` tag appears mid-line.

    Stop strings catch a tag after a newline; a small model often runs on into
    "... I agree. Jax: No way." on the same line.
    """
    others = sorted({n for n in names if n and n.casefold() != speaker.casefold()}, key=len, reverse=True)
    if not others:
        return text
    joined = "|".join(re.escape(n) for n in others)
    # Only after a sentence ends: "I agree with Walt: he is right" is speech.
    match = re.search(rf"(?<=[.!?…\"”)])\s+[*_]*(?:{joined})[*_]*\s*:(\s|$)", text)
    return text[: match.start()].rstrip() if match else text


def _word_ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = re.findall(r"\w+(?:'\w+)?", text.casefold())
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def leaks_instruction(text: str, instruction: str, *, n: int = 4, share: float = 0.5) -> bool:
    """True when the turn repeats the prompt's own text (system prompt, header, cue).

    Measured on SmolLM2-135M: the echoed turns copy whole runs of the system
    message ("You are Margaret. Reply with one short spoken turn ..."), so a turn
    whose word 4-grams are mostly found in the instruction is a leak, not speech.
    """
    grams = _word_ngrams(text, n)
    if not grams or not instruction:
        return False
    known = set(_word_ngrams(instruction, n))
    copied = sum(1 for g in grams if g in known)
    return copied / len(grams) >= share


# The instruction paraphrased instead of copied, measured on SmolLM2-135M: "I'll respond as
# Ines in one sentence.", "I'll play a role that's been created by Ines". Shown to the next
# speaker, such a turn spreads to the whole room, so it is resampled, never recorded.
_META = re.compile(
    r"\b(respond|reply|speak|answer|talk)(ing)? as\b"
    r"|\bplay(ing|ed)? (a|the|my|her|his|your) (new )?(role|character|part)\b(?! in\b)"
    r"|\bin character\b|\bas an? (AI|language model|assistant)\b|\bone[- ]sentence response\b",
    re.IGNORECASE,
)


def talks_about_the_prompt(text: str) -> bool:
    """True when the turn talks about its instructions or its role instead of the motion."""
    return bool(_META.search(text))


def clean_spoken(
    text: str, speaker: str, names: Iterable[str], instruction: str = "", *, resample_impersonation: bool = False
) -> str:
    """A trimmed turn made fit for the record: no tags, no narration, no leaked prompt.

    Returns "" for a turn that is only tags, only narration or a copy of the
    instruction, so the scheduler's degenerate check resamples it. With
    `resample_impersonation` (the transcript format) a turn that opens with another
    participant's tag is "" too: a base model that starts "Ann:" is writing Ann's
    line, not its own, and the words after the tag are hers.
    """
    names = tuple(names)
    text, others = strip_leading_tags(text, speaker, names)
    if others and resample_impersonation:
        return ""
    text = cut_inline_tags(text, speaker, names)
    text = strip_narration(text)
    text, _again = strip_leading_tags(text, speaker, names)
    text = text.strip()
    if leaks_instruction(text, instruction) or talks_about_the_prompt(text):
        return ""
    return text


# "Mike: Hey." from a chat model: a one- or two-word capitalised tag before the words.
_ANY_LEADING_TAG = re.compile(r"^\s*[*_]*[A-Z][\w'.-]{0,20}(?: [A-Z][\w'.-]{0,20})?[*_]*\s*:[*_]*[ \t]+(?=\S)")


def strip_any_leading_tag(text: str) -> str:
    """Drop a leading `Someone:` tag even for a name nobody in the room has.

    For chat models only: a reply never opens with a tag, while a transcript's
    base model may legitimately start "Note: ...". Measured on SmolLM2-135M:
    "Mike: Hey, Ines." with no Mike present.
    """
    return _ANY_LEADING_TAG.sub("", text, count=1)
