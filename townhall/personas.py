"""Persona files: one TOML file per participant, validated at the edge.

(The loader, the registry of built-in and user folders, and card import are filled
in by the debate work; the model below is the contract other layers rely on.)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from townhall.engine.base import SamplingOverrides


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
