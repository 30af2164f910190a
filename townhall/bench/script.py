"""The one scripted debate every benchmark runs, locally or through a server.

The transcript lines are written here, not generated, so every way sends byte-identical
prompts whatever the model says, and a local figure compares with a server figure. The
model still generates `tokens` tokens a turn at temperature 0 (no stop string), so decode
time is part of every figure; what it says is thrown away.

Each agent's prompt is its own header, then the transcript so far, then its name: it only
grows at the end between the agent's turns, which is what a KV state (or a server's
prompt cache) can reuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from townhall.engine.base import SamplingParams

MOTION = "Should the town replace the old river bridge with a wider one that has bike lanes?"

PEOPLE: tuple[tuple[str, str], ...] = (
    ("Ada", "a retired civil engineer who distrusts big budgets"),
    ("Bram", "a bakery owner worried about parking on Main Street"),
    ("Cleo", "a high-school teacher who wants safer crossings"),
    ("Dev", "a cyclist and software developer who loves data"),
    ("Esme", "a nurse who works night shifts at the county hospital"),
    ("Faisal", "a farmer from the edge of town"),
    ("Greta", "a city council veteran of twenty years"),
    ("Hugo", "a student who just moved here for college"),
    ("Ines", "a landlord with three buildings downtown"),
    ("Jonah", "a bus driver who knows every route"),
    ("Kira", "a librarian who runs the reading club"),
    ("Lev", "a fire chief close to retirement"),
)

LINES: tuple[str, ...] = (
    "The old bridge has ten good years left if we repair the deck now.",
    "Two years of construction would empty Main Street of my customers.",
    "My students cross that bridge on foot with trucks passing a yard away.",
    "The counts say three hundred cyclists a day use it already, without a lane.",
    "At four in the morning I want a route that does not flood every spring.",
    "My tractor needs the width more than anyone's bicycle does.",
    "We voted on this bridge twice before and both times the money ran out.",
    "I cannot afford a car, so the bike lane is how I would get to class.",
    "Tenants ask me about the bridge before they ask about the rent.",
    "A wider deck lets the number four bus stop waiting behind the lorries.",
    "Could we build the new bridge beside the old one and keep both open?",
    "Whatever we build, my engines must be able to cross it at full weight.",
)

MIN_AGENTS = 2
MAX_AGENTS = len(PEOPLE)


@dataclass(frozen=True)
class ScriptedTurn:
    speaker: str
    prompt: str


def header(name: str, names: list[str]) -> str:
    """What the speaker knows before the transcript: who it is, who else speaks, the motion."""
    role = dict(PEOPLE)[name]
    others = ", ".join(n for n in names if n != name)
    return (
        f"Transcript of a town hall meeting.\nMotion: {MOTION}\n"
        f"{name} is {role}, speaking with {others}. {name} speaks plainly, in one or two sentences.\n\n"
    )


def scripted_turns(agents: int, turns: int, edits: Mapping[int, str] | None = None) -> list[ScriptedTurn]:
    """The debate as prompts, round robin; `agents` must be within MIN_AGENTS..MAX_AGENTS.

    `edits` replaces the line said at a turn index (0-based) by the watcher's text: the
    prompts from the next turn on change from that line on, as after an edit in a session.
    """
    names = _names(agents)
    headers = {name: header(name, names) for name in names}
    result: list[ScriptedTurn] = []
    for index in range(turns):
        name = names[index % agents]
        result.append(ScriptedTurn(name, headers[name] + transcript(agents, index, edits) + f"{name}:"))
    return result


def transcript(agents: int, turns: int, edits: Mapping[int, str] | None = None) -> str:
    """The first `turns` lines of the debate, one `Name: text` line each."""
    names = _names(agents)
    return "".join(
        f"{names[i % agents]}: {(edits or {}).get(i, LINES[i % len(LINES)])}\n" for i in range(turns)
    )


def _names(agents: int) -> list[str]:
    if not MIN_AGENTS <= agents <= MAX_AGENTS:
        raise ValueError(f"agents must be between {MIN_AGENTS} and {MAX_AGENTS}")
    return [name for name, _ in PEOPLE[:agents]]


def sampling(tokens: int, seed: int = 0) -> SamplingParams:
    """Greedy, no stop string, no penalty: every way decodes the same number of tokens."""
    return SamplingParams(temperature=0.0, seed=seed, max_tokens=tokens, repeat_penalty=1.0, stop=())


def context_needed(agents: int, turns: int, tokens: int) -> int:
    """A safe context size for the longest prompt plus its reply (about 3 characters a token)."""
    script = scripted_turns(agents, turns)
    longest = max((len(turn.prompt) for turn in script), default=0)
    return longest // 3 + tokens + 16
