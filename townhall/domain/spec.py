"""A town hall as defined by a TOML file or by flags (pydantic-validated).

Files and flags meet in one model: a file is loaded first, then each flag given on
the command line replaces its field, and the result is validated once more, so a
bad value reads the same whether it came from a file or a flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from townhall.engine.base import SamplingOverrides
from townhall.engine.config import EngineSection
from townhall.errors import ConfigError, NotFoundError, validation_message
from townhall.domain.personas import Side

PolicyName = Literal["round_robin", "random", "moderator", "mention", "agenda"]
StrategyName = Literal["truncate", "summarize", "error"]
PromptFormatName = Literal["auto", "transcript", "chat"]


class Stance(BaseModel):
    """A participant's side on this motion and what they care about most.

    The header states it and the moderator's questions name the concern: a small
    base model argues a position it has been told far better than one it must invent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    side: Side
    concern: str = Field(min_length=3, max_length=160)

    @field_validator("concern")
    @classmethod
    def _one_line(cls, value: str) -> str:
        value = " ".join(value.split()).rstrip(".")
        if len(value) < 3:
            raise ValueError("must say what the participant is worried about, in a few words")
        return value


class TownHallSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    motion: str = Field(min_length=1)
    participants: list[str] = Field(min_length=1)
    moderator: str | None = None
    policy: PolicyName = "round_robin"
    stances: dict[str, Stance] = {}  # participant name -> side and concern on this motion
    # Each turn of a speaker with a side begins with a few words in that side (debate.openings).
    anchored_turns: bool = True
    max_turns: int | None = Field(default=12, ge=1)
    token_budget: int | None = Field(default=None, ge=1)
    time_budget_s: float | None = Field(default=None, gt=0)
    closing_phrase: str | None = "this meeting is adjourned"
    seed: int | None = Field(default=None, ge=0)
    sampling: SamplingOverrides = SamplingOverrides()
    n_ctx: int = Field(default=4096, ge=128)
    context_strategy: StrategyName = "truncate"
    prompt_format: PromptFormatName = "auto"
    engine: EngineSection | None = None  # which model or server; command-line flags win
    # The outcome: read each participant's stance after its turns (the stance probe), hold a
    # closing ballot when the debate ends and write the minutes. Off: the debate just stops.
    ballot: bool = True

    @field_validator("participants")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        names = [v.strip() for v in value if v.strip()]
        if not names:
            raise ValueError("needs at least one persona name")
        if len({n.casefold() for n in names}) != len(names):
            raise ValueError("each persona may appear only once")
        return names

    @model_validator(mode="after")
    def _stances_name_participants(self) -> TownHallSpec:
        known = {n.casefold() for n in self.participants}
        for name in self.stances:
            if self.moderator and name.casefold() == self.moderator.casefold():
                raise ValueError(f"stances: the moderator '{name}' takes no side")
            if name.casefold() not in known:
                raise ValueError(f"stances: '{name}' is not one of the participants")
        return self

    def stance_for(self, name: str) -> Stance | None:
        for key, stance in self.stances.items():
            if key.casefold() == name.casefold():
                return stance
        return None


def spec_from_data(data: Mapping[str, Any], source: str) -> TownHallSpec:
    try:
        return TownHallSpec.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(validation_message(error, source)) from None


def load_spec(path: Path, **overrides: Any) -> TownHallSpec:
    """Read a town-hall TOML file; non-None `overrides` (from flags) replace its fields."""
    from townhall.domain.personas import read_toml

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such town-hall file")
    data = read_toml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return spec_from_data(data, str(path))


def example_path(name: str) -> Path:
    """A shipped example by name (`default`, `night-bus`, ...)."""
    from townhall.paths import data_dir

    path = data_dir("examples") / f"{name.removesuffix('.toml')}.toml"
    if not path.is_file():
        raise NotFoundError(f"no example town hall named '{name}'")
    return path


def default_spec_path() -> Path:
    """The town hall the TUI opens on."""
    return example_path("default")
