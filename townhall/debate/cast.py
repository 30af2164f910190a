"""Who takes part in a town hall: the moderator and the participants, found among the personas.

Checked once, when a run is set up, so a town hall that names someone missing, or someone
twice, fails with one line before any model loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from townhall.debate.prompts import AUDIENCE
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import Turn, TurnKind
from townhall.errors import ConfigError


@dataclass(frozen=True)
class Cast:
    """`speakers` are the participants without the moderator; `participants` is speaking order."""

    moderator: Persona | None
    speakers: list[Persona]

    @classmethod
    def from_spec(cls, spec: TownHallSpec, personas: Iterable[Persona] | Mapping[str, Persona]) -> Cast:
        """The spec's people from `personas` (any iterable or mapping holding everyone it names)."""
        pool = list(personas.values()) if isinstance(personas, Mapping) else list(personas)
        by_key = {p.name.casefold(): p for p in pool}

        def find(name: str) -> Persona:
            persona = by_key.get(name.strip().casefold())
            if persona is None:
                raise ConfigError(f"town hall names '{name}', but no such persona was given")
            return persona

        moderator = find(spec.moderator) if spec.moderator else None
        speakers = [find(n) for n in spec.participants]
        if moderator is not None:
            speakers = [p for p in speakers if p.name != moderator.name]
        names = [p.name for p in speakers]
        if len(set(n.casefold() for n in names)) != len(names):
            raise ConfigError("participants: each persona may take part only once")
        if not speakers:
            raise ConfigError("participants: a town hall needs at least one participant besides the moderator")
        return cls(moderator, speakers)

    @property
    def participants(self) -> list[Persona]:
        """Speaking order: the moderator (if any) first."""
        return ([self.moderator] if self.moderator else []) + self.speakers

    def persona(self, name: str) -> Persona:
        return next(p for p in self.participants if p.name == name)

    def names(self, turns: Sequence[Turn]) -> list[str]:
        """Every name that may open a line: for stop strings and trimming, where a turn must
        end before another speaker's line (the audience's speakers included)."""
        extra = [t.speaker for t in turns if t.kind == TurnKind.AUDIENCE]
        return list(dict.fromkeys([p.name for p in self.participants] + [AUDIENCE] + extra))
