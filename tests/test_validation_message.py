"""One formatter for every pydantic error: all problems, one line, the place named the
way the user wrote it (a file field, a card field, a flag)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from townhall.cli.options import engine_config
from townhall.errors import ConfigError, validation_message


class _Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    size: int = Field(ge=1)


def _error(**data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Thing.model_validate(data)
    return info.value


def test_every_problem_on_one_line() -> None:
    message = validation_message(_error(size=0, colour="red\nblue"), "town.toml")
    assert message.startswith("town.toml: ") and "\n" not in message
    assert "field 'name' is required" in message
    assert "field 'colour' is not a known field" in message
    assert "field 'size': Input should be greater than or equal to 1" in message


def test_kinds_and_names() -> None:
    error = _error(name="x", size="big\nger")
    assert validation_message(error, kind="card field").startswith("card field 'size': ")
    assert validation_message(error, kind="").startswith("size: ")
    assert validation_message(error, kind="", name=lambda loc: "--" + str(loc[0])).startswith("--size: ")


def test_a_bad_flag_is_named_as_a_flag() -> None:
    with pytest.raises(ConfigError) as info:
        engine_config(n_ctx=16)
    assert str(info.value).startswith("--n-ctx: ") and "\n" not in str(info.value)
