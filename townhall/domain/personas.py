"""Persona files: one TOML file per participant, validated at the edge.

The model is the contract other layers rely on. A registry layers the built-in
folder, the user's config folder and an optional `--agents-dir`, later folders
overriding earlier ones by name, so users can bring and tweak their own people.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from townhall.engine.base import SamplingOverrides
from townhall.errors import ConfigError, NotFoundError, validation_message
from townhall.paths import data_dir, user_agents_dir


Side = Literal["for", "against", "undecided"]


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=40)
    title: str = Field(min_length=1, max_length=120)
    bio: str = Field(min_length=1)
    style: str = Field(min_length=1)
    color: str | None = None
    emoji: str | None = None
    talkativeness: float = Field(default=0.5, ge=0.0, le=1.0)
    moderator: bool = False
    examples: tuple[str, ...] = ()  # few-shot lines in the persona's voice (seed 002 openers)
    sampling: SamplingOverrides = SamplingOverrides()
    # Defaults for a town hall that gives this persona no stance of its own.
    side: Side | None = None
    concern: str | None = Field(default=None, min_length=3, max_length=160)

    @field_validator("name")
    @classmethod
    def _name_is_a_tag(cls, value: str) -> str:
        value = value.strip()
        if any(ch in value for ch in ":\n\r\t") or not value:
            raise ValueError("must be a single line without ':' (it becomes the 'Name:' tag)")
        return value

    @field_validator("title")
    @classmethod
    def _title_one_line(cls, value: str) -> str:
        if "\n" in value.strip():
            raise ValueError("must be one line")
        return value.strip()


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None


def persona_from_data(data: Mapping[str, Any], source: str) -> Persona:
    try:
        return Persona.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(validation_message(error, source)) from None


def load_persona(path: Path) -> Persona:
    """Read and validate one persona file; errors name the file and the field."""
    return persona_from_data(read_toml(path), str(path))


def persona_to_toml(persona: Persona) -> str:
    data = persona.model_dump(mode="json", exclude_defaults=True)
    sampling = data.pop("sampling", None)
    if sampling:
        data["sampling"] = sampling
    if "examples" in data:
        data["examples"] = list(data["examples"])
    return tomli_w.dumps(data)


def slug(name: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")
    return text or "persona"


class PersonaRegistry:
    """Built-in personas, then the user's folder, then an extra folder: later ones override.

    Names match case-insensitively, so `--agents stacy` finds "Stacy".
    """

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = [Path(f) for f in folders]
        self._by_key: dict[str, Persona] = {}
        self._sources: dict[str, Path] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.toml")):
                persona = load_persona(path)
                key = persona.name.casefold()
                self._by_key[key] = persona
                self._sources[key] = path

    @classmethod
    def default(cls, extra: Path | None = None) -> PersonaRegistry:
        folders = [data_dir("agents"), user_agents_dir()]
        if extra is not None:
            if not Path(extra).is_dir():
                raise NotFoundError(f"--agents-dir {extra}: no such folder")
            folders.append(Path(extra))
        return cls(folders)

    def names(self) -> list[str]:
        return sorted((p.name for p in self._by_key.values()), key=str.casefold)

    def all(self) -> list[Persona]:
        return [self._by_key[n.casefold()] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().casefold() in self._by_key

    def get(self, name: str) -> Persona:
        key = name.strip().casefold()
        if key not in self._by_key:
            known = ", ".join(self.names()) or "none"
            raise NotFoundError(f"no persona named '{name.strip()}' (known: {known})")
        return self._by_key[key]

    def source(self, name: str) -> Path:
        self.get(name)
        return self._sources[name.strip().casefold()]

    def resolve(self, names: Sequence[str]) -> list[Persona]:
        return [self.get(n) for n in names]
