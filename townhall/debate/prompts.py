"""Turning a town hall into each agent's prompt: transcript format and chat-template format.

Prompts are append-only per agent: the header (motion, who is present) and the
agent's own persona come first and never change, then one line per turn, then the
cue. The engine keeps each agent's KV state and reuses its longest common token
prefix, so an agent's next prompt costs only the turns said since it last spoke.
Only a context strategy (which also calls `engine.forget`) rewrites the middle.

A turn that answers the audience (`Turn.answers`) is cued as such, and the cue stays in
every later prompt: the transcript format writes a short line before `Name:` ("The chair
gives the floor to Walt, to answer the question from the audience."), which every later
prompt renders before that turn's line; the chat format words the user message's cue so,
and renders it again before the agent's own answer. So prompts stay append-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from townhall.errors import ConfigError
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec
from townhall.debate.trimming import clean_spoken, strip_any_leading_tag
from townhall.domain.turns import Turn, TurnStatus

TURN_SEPARATOR = "\n"
AUDIENCE = "Audience"
# Generic stops. In the transcript format a turn is one line: measured on the embedded
# model, the line after a turn is nearly always another speaker's (often one not in
# the room), a blank line or drift into another document (seed 000's failure), so the
# newline itself ends the turn. Chat models end turns with their own end marker.
TRANSCRIPT_STOPS = ("\n",)
CHAT_STOPS = ("\n\n\n", "\n```")
# The stance probe's two answers, as they follow the ballot cue ("... Ada votes" / "I vote"):
# the engine reads the probability of each one's first token.
BALLOT_CHOICES = (" for", " against")


def ballot_cue(who: str) -> str:
    """The transcript format's ballot line after the minutes ("- Walt, retired civil engineer"):
    the next token is the vote (`BALLOT_CHOICES`). See `TranscriptFormat.render_ballot`."""
    return f"\nThe vote:\n- {who}:"


@dataclass(frozen=True)
class Line:
    """One turn as an agent sees it; `answering` when it answers the audience."""

    speaker: str
    text: str
    answering: bool = False


@dataclass
class AgentView:
    """What one agent remembers: a summary of dropped turns, then the turns kept.

    `first` is the index into the session's turns of the first one still in the
    prompt; everything before it was dropped (truncate) or folded into `summary`.
    """

    agent: str
    first: int = 0
    summary: str | None = None
    summary_upto: int = 0
    rebuilds: int = 0


def visible(turn: Turn) -> bool:
    """Turns that enter prompts: said out loud and not degenerate."""
    if not turn.content.strip():
        return False
    return turn.status in (TurnStatus.COMPLETE, TurnStatus.INTERRUPTED)


def lines_for(turns: Sequence[Turn], first: int = 0) -> list[Line]:
    return [Line(t.speaker, t.content.strip()) for t in turns[first:] if visible(t)]


@dataclass(frozen=True)
class Rendered:
    prompt: str
    messages: tuple[Mapping[str, str], ...] | None = None


class PromptFormat(Protocol):
    name: str

    @property
    def generic_stops(self) -> tuple[str, ...]: ...

    def render(self, persona: Persona, summary: str | None, lines: Sequence[Line], answering: bool = False) -> Rendered:
        """The agent's prompt for its next turn; `answering` cues it to answer the audience."""

    def fixed_part(self, persona: Persona) -> str:
        """The part of every prompt for `persona` that no strategy may drop."""

    def render_ballot(self, persona: Persona, summary: str | None, lines: Sequence[Line]) -> str:
        """The agent's prompt with a private-ballot cue where its turn cue would be; the next
        token answers it (`BALLOT_CHOICES`). It shares the turn prompt's prefix, so a probe
        on the agent's state evaluates only the cue and whatever was said since it spoke."""


# One short exchange on another topic, in the header of every base-model prompt: it shows
# what a substantive turn looks like (a position, a concrete reason, an answer by name).
EXEMPLAR = (
    "From the minutes of an earlier meeting, on a new crosswalk by the school:\n"
    "Chair: Dana, you run the hardware store on the corner. What would a crosswalk mean for you?\n"
    "Dana: I am for it. Half my customers are over seventy, and the trucks on Elm Street do not slow "
    "down for anyone.\n"
    "Lee: Dana, a signal costs forty thousand dollars. Paint and a sign cost two thousand, so I say we "
    "try those first and count the cars for a month.\n"
    "Dana: Lee, paint fades by spring. If a child is hit, nobody will ask what the paint saved us.\n"
)


def exemplar_lines(exemplar: str = EXEMPLAR) -> tuple[str, ...]:
    """The exemplar's spoken words, for the n-gram ban: the model must not copy them."""
    return tuple(line.split(":", 1)[1].strip() for line in exemplar.splitlines() if ": " in line)


def resolve_stance(spec: TownHallSpec, persona: Persona) -> tuple[str, str] | None:
    """(side, concern) from the town hall, else the persona's defaults, else None."""
    stance = spec.stance_for(persona.name)
    if stance is not None:
        return stance.side, stance.concern
    if persona.side or persona.concern:
        concern = persona.concern or f"what the motion means for a {persona.title}"
        return persona.side or "undecided", concern.rstrip(".")
    return None


def is_chair(spec: TownHallSpec, persona: Persona) -> bool:
    return bool(spec.moderator) and persona.name.casefold() == (spec.moderator or "").casefold()


@dataclass
class TranscriptFormat:
    """For base models: minutes of a meeting, then `Name: text` lines, then `Name:`.

    A base model continues documents; this one reads like the minutes of a town
    hall, which the embedded Gemma 270M continues in voice (NOTES.md). The header
    states each participant's side and concern and carries one exemplar exchange:
    told a position, the small model argues it instead of agreeing with everyone.
    The header never changes during a session, so prompts stay append-only.

    `topic_last` (generate's layout, `topic_last_format`) moves the title and motion from the
    first lines to just before the transcript, so everything before them is the same for
    every town hall with these participants: an engine that shares KV cells between prompts
    with a common start evaluates each agent's header once for a whole run of topics.
    """

    spec: TownHallSpec
    participants: Sequence[Persona]
    name: str = "transcript"
    exemplar: str = EXEMPLAR
    topic_last: bool = False
    _headers: dict[str, str] = field(default_factory=dict)

    @property
    def generic_stops(self) -> tuple[str, ...]:
        return TRANSCRIPT_STOPS

    def header(self) -> str:
        opening = f"Minutes of the {self.spec.title}, a public town hall meeting." if self.spec.title else (
            "Minutes of a public town hall meeting."
        )
        lines = ["Minutes of a public town hall meeting."] if self.topic_last else [
            opening, f"Motion: {self.spec.motion.strip()}"]
        chair = [p for p in self.participants if is_chair(self.spec, p)]
        speakers = [p for p in self.participants if not is_chair(self.spec, p)]
        if chair:
            lines.append(f"Chair: {chair[0].name}, {chair[0].title}.")
        lines.append("Speakers:")
        for p in speakers:
            stance = resolve_stance(self.spec, p)
            if stance is None:
                lines.append(f"- {p.name}, {p.title}.")
            else:
                side, concern = stance
                where = {"for": "for the motion", "against": "against the motion"}.get(side, "undecided")
                lines.append(f"- {p.name}, {p.title}: {where}. Cares most about {concern}.")
        lines.append(
            "Each speaker talks in two or three full sentences, gives a reason from their own life, "
            "answers the others by name and never repeats what was already said."
        )
        return "\n".join(lines) + "\n"

    def persona_block(self, persona: Persona) -> str:
        parts = [f"\nAbout {persona.name}: {persona.bio.strip()}", f"{persona.name}'s style: {persona.style.strip()}"]
        stance = None if is_chair(self.spec, persona) else resolve_stance(self.spec, persona)
        if stance is not None:  # the agent's own side, restated close to where it speaks
            side, concern = stance
            where = {"for": "is for the motion", "against": "is against the motion"}.get(side, "is undecided")
            parts.append(f"{persona.name} {where} and cares most about {concern}.")
        if persona.examples:
            parts.append(f"{persona.name} says things like:")
            parts.extend(f"{persona.name}: {ex.strip()}" for ex in persona.examples)
        return "\n".join(parts) + "\n"

    def fixed_part(self, persona: Persona) -> str:
        if persona.name not in self._headers:
            example = f"\n{self.exemplar}" if self.exemplar else ""
            self._headers[persona.name] = (
                self.header() + example + self.persona_block(persona) + self.topic_block()
                + "\nTranscript of tonight's meeting:\n"
            )
        return self._headers[persona.name]

    def topic_block(self) -> str:
        """Tonight's title and motion where `topic_last` puts them (nothing otherwise)."""
        if not self.topic_last:
            return ""
        title = f"\nTonight's meeting: the {self.spec.title}." if self.spec.title else ""
        return f"{title}\nMotion: {self.spec.motion.strip()}\n"

    def render(self, persona: Persona, summary: str | None, lines: Sequence[Line], answering: bool = False) -> Rendered:
        text = self.fixed_part(persona)
        if summary:
            text += f"(Earlier in the meeting: {summary.strip()})\n"
        for line in lines:
            if line.answering:
                text += self.answer_lead(line.speaker) + TURN_SEPARATOR
            text += f"{line.speaker}: {line.text}{TURN_SEPARATOR}"
        if answering:
            text += self.answer_lead(persona.name) + TURN_SEPARATOR
        return Rendered(text + f"{persona.name}:")

    def answer_lead(self, name: str) -> str:
        """The minutes' line before a turn that answers the audience: the chair gives the floor."""
        chair = next((p for p in self.participants if is_chair(self.spec, p)), None)
        if chair is None or chair.name == name:
            return f"{name} answers the question from the audience."
        return f"The chair gives the floor to {name}, to answer the question from the audience."

    def render_ballot(self, persona: Persona, summary: str | None, lines: Sequence[Line]) -> str:
        """The minutes go on to the vote, in the header's own `- Name, title: for the motion`
        form. Measured on the embedded 270M model against six other cues (a secret-ballot line
        ending in "votes", a chair's question, "I vote"...): the only one whose answer followed
        each speaker's side instead of saying " for" for everyone. "The vote:" rather than "The
        vote at the end of the meeting:": six tokens fewer on every probe (12 in all before the
        name and title), and on 12 speakers of three town halls the readings moved by 0.09 at
        most, the "against" speakers' a little further toward against."""
        prompt = self.render(persona, summary, lines).prompt.removesuffix(f"{persona.name}:")
        return prompt + ballot_cue(f"{persona.name}, {persona.title}")


def compile_chat_template(template: str) -> Any:
    """A model's chat template, compiled in a sandboxed Jinja environment: it came from a model
    file, so it is untrusted. ConfigError when it does not parse."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template)
    except TemplateError as error:
        raise ConfigError(f"the model's chat template does not parse: {error}") from None


def render_chat(compiled: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """`messages` through a compiled chat template, up to the assistant's turn."""
    from jinja2.exceptions import TemplateError

    try:
        return str(compiled.render(messages=list(messages), add_generation_prompt=True, bos_token="", eos_token=""))
    except TemplateError as error:
        raise ConfigError(f"the model's chat template failed to render: {error}") from None


@dataclass
class ChatFormat:
    """For instruction-tuned models whose GGUF carries a chat template.

    Measured on SmolLM2-135M-Instruct: a long system prompt ending in an order is
    echoed back as the turn, and `Name: text` user messages are copied with their
    tags ("Priya: Walt: ..."). So the system message is short and in the second
    person, other people's words arrive as one user message of transcript lines
    followed by a cue naming the speaker and whom to answer, and the agent's own
    earlier turns are plain `assistant` messages with no tag. Every user message
    keeps its cue, so an agent's prompt still only grows (its KV state is reused).

    `layout="transcript"` instead puts the last `window` lines, own ones included,
    into one user message. Kept for comparison: on SmolLM2 (seed 11, 14 turns) it
    paraphrased the cue back ("Margaret, I'll respond as Ines in one sentence.")
    more often than the default layout did. The template is rendered in a sandboxed
    Jinja environment (it came from a model file, so it is untrusted).
    """

    spec: TownHallSpec
    participants: Sequence[Persona]
    template: str
    name: str = "chat"
    layout: str = "turns"
    window: int = 8

    @property
    def generic_stops(self) -> tuple[str, ...]:
        # A blank line ends the turn: trim_turn cuts there anyway, so decoding on is waste.
        return ("\n\n", *CHAT_STOPS)

    def __post_init__(self) -> None:
        self._template = compile_chat_template(self.template)

    def fixed_part(self, persona: Persona) -> str:
        return self.system_text(persona)

    def _is_moderator(self, persona: Persona) -> bool:
        return persona.moderator or persona.name == self.spec.moderator

    def system_text(self, persona: Persona) -> str:
        others = [p for p in self.participants if p.name != persona.name]
        room = ", ".join(f"{p.name} ({p.title})" for p in others)
        role = "the moderator" if self._is_moderator(persona) else persona.title
        text = (
            f"You are {persona.name}, {role}, at a town hall meeting.\n"
            f"Motion: {self.spec.motion.strip()}\n"
            f"Also present: {room}.\n"
            f"About you: {persona.bio.strip()}\n"
            f"Your style: {persona.style.strip()}"
        )
        stance = None if self._is_moderator(persona) else resolve_stance(self.spec, persona)
        if stance is not None:  # the side it argues, the strongest cue it gets (debate.openings starts its turns)
            side, concern = stance
            where = {"for": "You are for the motion", "against": "You are against the motion"}.get(
                side, "You have not decided on the motion")
            text += f"\n{where}. You care most about {concern}."
        if persona.examples:
            text += "\nThings you have said: " + " ".join(f'"{ex.strip()}"' for ex in persona.examples)
        return text

    def cue(self, persona: Persona, last: Line | None, answering: bool = False) -> str:
        """The closing instruction of a user message: who speaks now and to whom."""
        if answering:
            return f"{persona.name}, the audience asked you a question. Answer the audience in one or two sentences."
        if self._is_moderator(persona):
            if last is None:
                return f"{persona.name}, open the meeting: state the motion and call on someone by name."
            return f"{persona.name}, respond to {last.speaker} in one sentence, then call on someone by name."
        if last is None:
            return f"{persona.name}, you speak first. Say where you stand on the motion and why."
        return f"{persona.name}, your turn. Answer {last.speaker} in one or two sentences."

    def instruction_text(self, persona: Persona) -> str:
        """Everything the prompt ever tells this agent; a turn that repeats it is a leak."""
        cues = [self.cue(persona, None)] + [self.cue(persona, Line(p.name, "")) for p in self.participants]
        cues.append(self.cue(persona, None, answering=True))
        return self.system_text(persona) + "\n" + "\n".join(dict.fromkeys(cues))

    def messages(
        self, persona: Persona, summary: str | None, lines: Sequence[Line], answering: bool = False
    ) -> list[dict[str, str]]:
        if self.layout == "transcript":
            return self._transcript_messages(persona, summary, lines, answering)
        messages: list[dict[str, str]] = [{"role": "system", "content": self.system_text(persona)}]
        pending: list[str] = [f"(Earlier: {summary.strip()})"] if summary else []
        last: Line | None = None

        def close_block(answers: bool) -> None:
            body = "\n".join(pending)
            cue = self.cue(persona, last, answers)
            messages.append({"role": "user", "content": f"{body}\n\n{cue}" if body else cue})
            pending.clear()

        for line in lines:
            if line.speaker == persona.name:
                close_block(line.answering)
                messages.append({"role": "assistant", "content": line.text})
            else:
                pending.append(f"{line.speaker}: {line.text}")
                last = line
        close_block(answering)
        return messages

    def _transcript_messages(
        self, persona: Persona, summary: str | None, lines: Sequence[Line], answering: bool = False
    ) -> list[dict[str, str]]:
        recent = list(lines[-self.window :])
        body = [f"(Earlier: {summary.strip()})"] if summary else []
        body += [f"{line.speaker}: {line.text}" for line in recent]
        last = next((line for line in reversed(recent) if line.speaker != persona.name), None)
        cue = self.cue(persona, last, answering)
        content = "\n".join(body) + "\n\n" + cue if body else cue
        return [{"role": "system", "content": self.system_text(persona)}, {"role": "user", "content": content}]

    def render(self, persona: Persona, summary: str | None, lines: Sequence[Line], answering: bool = False) -> Rendered:
        messages = self.messages(persona, summary, lines, answering)
        return Rendered(render_chat(self._template, messages), tuple(messages))

    def render_ballot(self, persona: Persona, summary: str | None, lines: Sequence[Line]) -> str:
        messages = self.messages(persona, summary, lines)
        question = ("Secret ballot: do you vote for or against the motion? "
                    f"Motion: {self.spec.motion.strip()}")
        last = dict(messages[-1])
        body = last["content"].rsplit("\n\n", 1)[0] if "\n\n" in last["content"] else ""
        last["content"] = f"{body}\n\n{question}" if body else question
        messages[-1] = last
        return render_chat(self._template, messages) + "I vote"

    def clean_turn(self, persona: Persona, text: str, names: Sequence[str]) -> str:
        """Tags, narration and echoed instructions out of a generated turn ("" = resample)."""
        return clean_spoken(strip_any_leading_tag(text), persona.name, names, self.instruction_text(persona))


def topic_last_format(prompt_format: PromptFormat) -> PromptFormat:
    """The same format with what varies per town hall placed last (transcript format only;
    a chat format's system message already ends with the agent's own lines)."""
    if isinstance(prompt_format, TranscriptFormat) and not prompt_format.topic_last:
        return TranscriptFormat(prompt_format.spec, prompt_format.participants, exemplar=prompt_format.exemplar,
                                topic_last=True)
    return prompt_format


def choose_format(
    spec: TownHallSpec, participants: Sequence[Persona], chat_template: str | None
) -> PromptFormat:
    """`auto` picks chat when the model carries a template, else the transcript."""
    wanted = spec.prompt_format
    if wanted == "auto":
        wanted = "chat" if chat_template else "transcript"
    if wanted == "chat":
        if not chat_template:
            raise ConfigError("prompt_format = 'chat' needs a model with a chat template; use 'transcript' or 'auto'")
        return ChatFormat(spec, participants, chat_template)
    return TranscriptFormat(spec, participants)


def stop_strings(
    speaker: str, names: Sequence[str], eos_markers: Sequence[str], generic: Sequence[str] = CHAT_STOPS
) -> tuple[str, ...]:
    """Every other participant's tag ends the speaker's turn, as do the model's end markers."""
    others = [n for n in dict.fromkeys([*names, AUDIENCE]) if n != speaker]
    stops = [f"\n{n}:" for n in others] + [m for m in eos_markers if m] + list(generic)
    return tuple(dict.fromkeys(stops))
