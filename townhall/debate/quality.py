"""What a good town-hall turn is, and how good a whole debate was: one definition for all.

The scheduler's resample check, `townhall bench --quality` and `townhall generate`
all judge turns here, so "clean" means the same thing wherever it is counted.

A turn is clean when it has at least three words, carries no other participant's
`Name:` tag anywhere, is not stage directions or narration alone, has no code fence
or LaTeX, and is not an echo: a turn whose word 3-grams are at least half already
said earlier in the debate. Echoes are what a small base model falls into
("I agree." / "I agree with you.") once it has nothing new to say.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

MIN_WORDS = 3
ECHO_SHARE = 0.5

# Failure reasons, as counted by the benchmark.
EMPTY = "empty"
TOO_SHORT = "too_short"
FOREIGN_TAG = "foreign_tag"
NARRATION = "narration"
MARKUP = "markup"
ECHO = "echo"

_WORD = re.compile(r"[\w']+", re.UNICODE)
_FENCE = re.compile(r"```|~~~")
_LATEX = re.compile(
    r"\$\$|\\(begin|end|frac|sqrt|sum|int|left|right|text|mathrm|cdot|times)\b|\\[(\[]"
    r"|\$[^$\s][^$]*\\[a-zA-Z]+[^$]*\$"
)
# Stage directions: "(laughs)", "*nods slowly*", "[applause]".
_STAGE = re.compile(r"\([^()]*\)|\*[^*]*\*|\[[^\]]*\]")
# Narration of the meeting rather than speech: "Walt nods.", "The room falls silent."
_NARRATION_VERBS = (
    "nods|smiles|laughs|sighs|shrugs|pauses|leans|stands|sits|looks|turns|walks|points|raises|"
    "shakes|frowns|grins|chuckles|waves|claps|glances|clears|falls|goes|grows|erupts|murmurs|applauds"
)


def words(text: str) -> list[str]:
    """Lower-case words, apostrophes kept ("don't" is one word)."""
    return [w.casefold() for w in _WORD.findall(text)]


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def echo_share(text: str, earlier: Iterable[str]) -> float:
    """The share of this turn's word 3-grams already said in `earlier` turns (0 if it has none)."""
    grams = ngrams(words(text), 3)
    if not grams:
        return 0.0
    said: set[tuple[str, ...]] = set()
    for previous in earlier:
        said.update(ngrams(words(previous), 3))
    return sum(1 for g in grams if g in said) / len(grams)


def is_echo(text: str, earlier: Iterable[str]) -> bool:
    return echo_share(text, earlier) >= ECHO_SHARE


def foreign_tag(text: str, speaker: str, names: Iterable[str]) -> str | None:
    """Another participant's `Name:` tag anywhere in the turn: the model spoke for them."""
    for name in names:
        if name.casefold() == speaker.casefold():
            continue
        if re.search(rf"(?<!\w){re.escape(name)}\s*:", text, flags=re.IGNORECASE):
            return name
    return None


def is_narration(text: str, names: Iterable[str] = ()) -> bool:
    """Only stage directions, or a third-person description of someone instead of speech."""
    spoken = _STAGE.sub(" ", text)
    if not _WORD.search(spoken):
        return True
    subjects = "|".join(re.escape(n) for n in (*names, "the room", "the crowd", "everyone", "he", "she", "they"))
    pattern = rf"^\s*({subjects})\s+({_NARRATION_VERBS})\b[^.!?]*[.!?]?\s*$"
    return re.match(pattern, spoken.strip(), flags=re.IGNORECASE) is not None


def has_markup(text: str) -> bool:
    return bool(_FENCE.search(text) or _LATEX.search(text))


@dataclass(frozen=True)
class TurnCheck:
    """The verdict on one turn: clean, or the first rule it broke."""

    clean: bool
    reason: str | None = None
    echo: bool = False


def check_turn(text: str, speaker: str, names: Iterable[str], earlier: Iterable[str]) -> TurnCheck:
    """Judge one turn's final text against the participants' names and what was said before."""
    names = list(names)
    echo = is_echo(text, earlier)
    if not text.strip():
        return TurnCheck(False, EMPTY, echo)
    if is_narration(text, names):
        return TurnCheck(False, NARRATION, echo)
    if len(words(text)) < MIN_WORDS:
        return TurnCheck(False, TOO_SHORT, echo)
    if foreign_tag(text, speaker, names):
        return TurnCheck(False, FOREIGN_TAG, echo)
    if has_markup(text):
        return TurnCheck(False, MARKUP, echo)
    if echo:
        return TurnCheck(False, ECHO, echo)
    return TurnCheck(True, None, echo)


def names_self(text: str, speaker: str) -> bool:
    """The speaker says its own name: it addresses itself ("Priya, your turn.") or speaks of
    itself in the third person ("Priya will support Walt"). Chat models do both when the cue
    names them (measured on SmolLM2-135M); nobody in a town hall says their own name. Checked
    on chat-format turns only (`TurnTaker`): a base model continuing the minutes does not do it."""
    return re.search(rf"(?<![\w']){re.escape(speaker)}(?![\w'])", text, flags=re.IGNORECASE) is not None


def answers(text: str, speaker: str, previous_speaker: str | None, names: Iterable[str]) -> bool:
    """The turn names a participant or the previous speaker, or replies to what was just said.

    A reply is recognised by its opening ("Yes", "No", "But", "I agree", "That's",
    "You", ...): the cheap, visible signs of an answer rather than a speech.
    """
    others = [n for n in names if n.casefold() != speaker.casefold()]
    if previous_speaker and previous_speaker.casefold() != speaker.casefold():
        others.append(previous_speaker)
    for name in others:
        if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, flags=re.IGNORECASE):
            return True
    opening = r"^\s*(yes|no|but|well|i agree|i disagree|that's|that is|you|your|with respect|fair point|true|right)\b"
    return re.match(opening, text, flags=re.IGNORECASE) is not None


@dataclass(frozen=True)
class ScoredTurn:
    """One turn as the benchmark counts it (only model-written turns are scored)."""

    speaker: str
    text: str
    clean: bool
    reason: str | None
    echo: bool
    answer: bool
    words: int
    phase: str | None = None


def _ratio(part: float, whole: int) -> float:
    """`part` per `whole`; 0.0 for a debate with nothing to count yet, so a report never divides by zero."""
    return part / whole if whole else 0.0


@dataclass
class DebateScore:
    """A debate's figures; `merge` pools several so the overall rates weigh every turn alike."""

    turns: int = 0
    clean: int = 0
    echoes: int = 0
    answered: int = 0
    words: int = 0
    bigrams: int = 0
    distinct_bigrams: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def clean_rate(self) -> float:
        return _ratio(self.clean, self.turns)

    @property
    def echo_rate(self) -> float:
        return _ratio(self.echoes, self.turns)

    @property
    def answer_rate(self) -> float:
        return _ratio(self.answered, self.turns)

    @property
    def mean_words(self) -> float:
        return _ratio(self.words, self.turns)

    @property
    def distinct_2(self) -> float:
        return _ratio(self.distinct_bigrams, self.bigrams)

    @property
    def seconds_per_turn(self) -> float:
        return _ratio(self.seconds, self.turns)

    def figures(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "clean_rate": round(self.clean_rate, 4),
            "echo_rate": round(self.echo_rate, 4),
            "mean_words": round(self.mean_words, 2),
            "distinct_2": round(self.distinct_2, 4),
            "answer_rate": round(self.answer_rate, 4),
            "seconds_per_turn": round(self.seconds_per_turn, 3),
            "failures": dict(sorted(self.reasons.items())),
        }

    @classmethod
    def merge(cls, scores: Iterable[DebateScore]) -> DebateScore:
        total = cls()
        for s in scores:
            for key, value in asdict(s).items():
                if key == "reasons":
                    for reason, n in value.items():
                        total.reasons[reason] = total.reasons.get(reason, 0) + n
                else:
                    setattr(total, key, getattr(total, key) + value)
        return total


def score_debate(
    turns: Sequence[tuple[str, str, bool]], names: Sequence[str], seconds: float = 0.0
) -> tuple[DebateScore, list[ScoredTurn]]:
    """Score `(speaker, text, written_by_model)` turns in order; scripted lines count as context only.

    As in the scheduler, only clean turns (and scripted lines) count as said for
    the echo check of later turns: a rejected turn never entered anyone's prompt.

    Distinct-2 is over the model-written turns of the whole debate: distinct word
    bigrams across the debate divided by all of its bigrams.
    """
    score = DebateScore(seconds=seconds)
    earlier: list[str] = []
    previous: str | None = None
    seen_bigrams: set[tuple[str, ...]] = set()
    scored: list[ScoredTurn] = []
    for speaker, text, by_model in turns:
        if by_model:
            check = check_turn(text, speaker, names, earlier)
            answer = answers(text, speaker, previous, names)
            tokens = words(text)
            grams = ngrams(tokens, 2)
            score.turns += 1
            score.clean += check.clean
            score.echoes += check.echo
            score.answered += answer
            score.words += len(tokens)
            score.bigrams += len(grams)
            before = len(seen_bigrams)
            seen_bigrams.update(grams)
            score.distinct_bigrams += len(seen_bigrams) - before
            if check.reason:
                score.reasons[check.reason] = score.reasons.get(check.reason, 0) + 1
            scored.append(ScoredTurn(speaker, text, check.clean, check.reason, check.echo, answer, len(tokens)))
            if check.clean:
                earlier.append(text)  # as in the scheduler: a rejected turn never enters the record
        elif text.strip():
            earlier.append(text)
        previous = speaker
    return score, scored
