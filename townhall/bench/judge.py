"""The faithfulness judge: a larger instruct model reads one turn and says what it argues.

For each statement the judge answers three questions, each by the probability of its
one-word answers (no text is generated, so nothing has to be parsed): which side of the
motion it argues (for, against, neither), whether it gives a concrete reason bearing on the
motion, and whether it is about the motion at all. The motion and the statement come before
the question, so the judge evaluates them once per statement (its KV state is kept, as an
agent's is) and then only each question's few tokens.

A judge is only a measure if it agrees with people: `check_agreement` scores it on the
hand-labelled statements shipped in `examples/bench/judge_labels.toml`, and the quality
bench refuses figures from a judge below `MIN_AGREEMENT`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from townhall.debate.prompts import compile_chat_template, render_chat
from townhall.domain.personas import read_toml
from townhall.engine.base import Engine, GenerationRequest, SamplingParams
from townhall.errors import ConfigError, NotFoundError

JudgedSide = Literal["for", "against", "neither"]
MIN_AGREEMENT = 0.85
JUDGE_AGENT = "judge"

SYSTEM = (
    "You judge statements made at town hall meetings. For each statement, answer three things:\n"
    "On topic: yes if it is about the motion or the issue it raises (saying which side one is on counts); "
    "no if it is about something else or makes no sense.\n"
    "Reason: yes if it gives a concrete reason bearing on the motion (a cost, a benefit, a risk, a fact, "
    "an example); no if it only says which side it is on, or its reason has nothing to do with the motion.\n"
    "Side: for if the speaker wants the motion to pass, against if the speaker wants it to fail, neither if "
    "the speaker takes no side, only asks a question, or contradicts itself. A reason why the motion would "
    "help means for; a reason why it would hurt means against."
)
# Worked answers on motions that are not in the hand-labelled set: one of each kind of turn.
EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("The town should paint a crosswalk by the school.",
     "Half my customers are over seventy, and the trucks on Elm Street never slow down.",
     "On topic: yes. Reason: yes. Side: for."),
    ("The town should paint a crosswalk by the school.",
     "I am against the motion.", "On topic: yes. Reason: no. Side: against."),
    ("Sell the old fire station to a developer.",
     "That building is the last piece of history we have. Once it is flats, it is gone for good.",
     "On topic: yes. Reason: yes. Side: against."),
    ("Sell the old fire station to a developer.",
     "My cousin has a boat, and the boat is blue.", "On topic: no. Reason: no. Side: neither."),
    ("Sell the old fire station to a developer.",
     "Sell it. The town pays nine thousand dollars a year to heat an empty building.",
     "On topic: yes. Reason: yes. Side: for."),
    ("The town should paint a crosswalk by the school.",
     "Lee, what does the traffic count say about the mornings?", "On topic: yes. Reason: no. Side: neither."),
    ("Sell the old fire station to a developer.",
     "Yes, I am for selling it. I think it is a great idea.", "On topic: yes. Reason: no. Side: for."),
)
SIDES: tuple[JudgedSide, ...] = ("for", "against", "neither")
YES_NO = ("yes", "no")


@dataclass(frozen=True)
class Verdict:
    """What the judge read in one statement, with the probability it gave each answer."""

    side: JudgedSide
    reason: bool
    relevant: bool
    side_p: tuple[float, float, float]  # for, against, neither
    reason_p: float
    relevant_p: float


class LabelledStatement(BaseModel):
    """One statement a person labelled (`examples/bench/judge_labels.toml`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    motion: str = Field(min_length=1)
    text: str = Field(min_length=1)
    side: JudgedSide
    reason: bool
    relevant: bool


def labels_path() -> Path:
    from townhall.paths import data_dir

    return data_dir("examples") / "bench" / "judge_labels.toml"


def load_labels(path: Path | None = None) -> list[LabelledStatement]:
    path = Path(path) if path is not None else labels_path()
    if not path.is_file():
        raise NotFoundError(f"{path}: no such labels file")
    entries = read_toml(path).get("statement")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: needs [[statement]] tables")
    try:
        return [LabelledStatement.model_validate(entry) for entry in entries]
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None


def _statement(motion: str, text: str) -> str:
    return f"Motion: {' '.join(motion.split())}\nStatement: \"{' '.join(text.split())}\""


class Judge:
    """Asks one instruct model the three questions about each statement."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._template: Any = None

    async def start(self) -> None:
        await self.engine.start()
        template = self.engine.info.chat_template
        if not template:
            raise ConfigError(f"the judge model {self.engine.info.model_name} has no chat template: "
                              "the judge needs an instruct model")
        self._template = compile_chat_template(template)

    def _prompt(self, motion: str, text: str) -> str:
        """The messages up to the judge's answer, which begins "On topic:"."""
        messages = [{"role": "system", "content": SYSTEM}]
        for example_motion, example_text, answer in EXAMPLES:
            messages += [{"role": "user", "content": _statement(example_motion, example_text)},
                         {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": _statement(motion, text)})
        return render_chat(self._template, messages) + "On topic:"

    async def judge(self, motion: str, text: str) -> Verdict:
        """Read each answer in turn, the most likely one written before the next is read. The
        prompt is evaluated into the judge's state first, so each read costs a few tokens."""
        if self._template is None:
            await self.start()
        prompt = self._prompt(motion, text)
        request = GenerationRequest(agent_id=JUDGE_AGENT, prompt=prompt,
                                    sampling=SamplingParams(max_tokens=1, temperature=0.0))
        await self.engine.generate(request).result()
        relevant = await self.engine.probe(JUDGE_AGENT, prompt, [f" {a}" for a in YES_NO])
        prompt += f" {'yes' if relevant.share(0) > 0.5 else 'no'}. Reason:"
        reason = await self.engine.probe(JUDGE_AGENT, prompt, [f" {a}" for a in YES_NO])
        prompt += f" {'yes' if reason.share(0) > 0.5 else 'no'}. Side:"
        side = await self.engine.probe(JUDGE_AGENT, prompt, [f" {s}" for s in SIDES])
        side_p = tuple(side.probabilities)
        chosen = SIDES[max(range(3), key=lambda i: side_p[i])]
        return Verdict(
            side=chosen, reason=reason.share(0) > 0.5, relevant=relevant.share(0) > 0.5,
            side_p=(side_p[0], side_p[1], side_p[2]), reason_p=reason.share(0), relevant_p=relevant.share(0),
        )

    async def judge_all(
        self, items: Sequence[tuple[str, str]], progress: Callable[[int, int], None] = lambda done, total: None
    ) -> list[Verdict]:
        verdicts = []
        for number, (motion, text) in enumerate(items, start=1):
            verdicts.append(await self.judge(motion, text))
            progress(number, len(items))
        return verdicts


@dataclass(frozen=True)
class Agreement:
    """The judge against the hand labels: the share it got right, per question and in all."""

    statements: int
    side: float
    reason: float
    relevant: float
    misses: tuple[str, ...]  # "field: text (said X, labelled Y)" for each disagreement

    @property
    def overall(self) -> float:
        return (self.side + self.reason + self.relevant) / 3

    @property
    def is_measure(self) -> bool:
        return self.overall >= MIN_AGREEMENT

    def figures(self) -> dict[str, Any]:
        return {"statements": self.statements, "agreement": round(self.overall, 3), "side": round(self.side, 3),
                "reason": round(self.reason, 3), "relevant": round(self.relevant, 3),
                "min_agreement": MIN_AGREEMENT, "is_measure": self.is_measure}


def agreement(labels: Sequence[LabelledStatement], verdicts: Sequence[Verdict]) -> Agreement:
    misses: list[str] = []
    right = {"side": 0, "reason": 0, "relevant": 0}
    for label, verdict in zip(labels, verdicts, strict=True):
        for field in right:
            said, wanted = getattr(verdict, field), getattr(label, field)
            if said == wanted:
                right[field] += 1
            else:
                misses.append(f"{field}: {label.text[:60]!r} (said {said}, labelled {wanted})")
    n = len(labels) or 1
    return Agreement(len(labels), right["side"] / n, right["reason"] / n, right["relevant"] / n, tuple(misses))


async def check_agreement(judge: Judge, labels: Sequence[LabelledStatement]) -> Agreement:
    verdicts = await judge.judge_all([(label.motion, label.text) for label in labels])
    return agreement(labels, verdicts)
