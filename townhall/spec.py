"""A town hall as defined by a TOML file or by flags (pydantic-validated)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from townhall.engine.base import SamplingOverrides

PolicyName = Literal["round_robin", "random", "moderator", "mention"]
StrategyName = Literal["truncate", "summarize", "error"]
PromptFormatName = Literal["auto", "transcript", "chat"]


class TownHallSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    motion: str = Field(min_length=1)
    participants: list[str] = Field(min_length=1)
    moderator: str | None = None
    policy: PolicyName = "round_robin"
    max_turns: int | None = Field(default=12, ge=1)
    token_budget: int | None = Field(default=None, ge=1)
    time_budget_s: float | None = Field(default=None, gt=0)
    closing_phrase: str | None = "this meeting is adjourned"
    seed: int | None = Field(default=None, ge=0)
    sampling: SamplingOverrides = SamplingOverrides()
    n_ctx: int = Field(default=4096, ge=128)
    context_strategy: StrategyName = "truncate"
    prompt_format: PromptFormatName = "auto"
