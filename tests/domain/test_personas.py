"""Persona files: the shipped cast, validation messages, and folder layering."""

from __future__ import annotations

from pathlib import Path

import pytest

from townhall.errors import ConfigError, NotFoundError
from townhall.paths import user_agents_dir
from townhall.domain.personas import PersonaRegistry, load_persona, persona_to_toml
from townhall.domain.spec import load_spec


def test_shipped_personas_are_valid_and_distinct() -> None:
    registry = PersonaRegistry.default()
    people = registry.all()
    assert len(people) >= 8
    assert {"Stacy", "pogi"} <= set(registry.names())
    assert any(p.moderator for p in people)
    assert len({p.bio for p in people}) == len(people) and len({p.style for p in people}) == len(people)
    assert registry.get("STACY").name == "Stacy"
    assert "rapper" in registry.get("stacy").title


def test_shipped_examples_name_only_known_personas() -> None:
    registry = PersonaRegistry.default()
    from townhall.paths import data_dir

    examples = sorted(data_dir("examples").glob("*.toml"))
    assert any(p.name == "default.toml" for p in examples)
    for path in examples:
        spec = load_spec(path)
        registry.resolve(spec.participants + ([spec.moderator] if spec.moderator else []))
    default = load_spec(data_dir("examples") / "default.toml")
    assert default.moderator and len(default.participants) >= 4


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    bad = write(tmp_path, "x.toml", 'name = "X"\ntitle = "t"\nbio = "b"\nstyle = "s"\ntalkativeness = 3\n')
    with pytest.raises(ConfigError) as info:
        load_persona(bad)
    message = str(info.value)
    assert str(bad) in message and "talkativeness" in message and "\n" not in message

    missing = write(tmp_path, "y.toml", 'name = "Y"\ntitle = "t"\nstyle = "s"\nfavourite = 1\n')
    message = str(pytest.raises(ConfigError, load_persona, missing).value)
    assert "'bio' is required" in message and "'favourite' is not a known field" in message

    tag = write(tmp_path, "z.toml", 'name = "Bad: Name"\ntitle = "t"\nbio = "b"\nstyle = "s"\n')
    assert "'name'" in str(pytest.raises(ConfigError, load_persona, tag).value)

    broken = write(tmp_path, "w.toml", 'name = "W\n')
    assert "invalid TOML" in str(pytest.raises(ConfigError, load_persona, broken).value)


def test_user_folder_and_agents_dir_add_and_override(tmp_path: Path) -> None:
    write(user_agents_dir(), "walt.toml", 'name = "Walt"\ntitle = "bridge fan"\nbio = "b"\nstyle = "s"\n')
    write(user_agents_dir(), "new.toml", 'name = "Nell"\ntitle = "newcomer"\nbio = "b"\nstyle = "s"\n')
    extra = tmp_path / "extra"
    write(extra, "nell.toml", 'name = "nell"\ntitle = "override from --agents-dir"\nbio = "b"\nstyle = "s"\n')
    registry = PersonaRegistry.default(extra)
    assert registry.get("walt").title == "bridge fan"
    assert registry.get("Nell").title == "override from --agents-dir"
    assert registry.source("nell") == extra / "nell.toml"
    assert "Stacy" in registry
    with pytest.raises(NotFoundError, match="no persona named 'Zed'"):
        registry.get("Zed")
    with pytest.raises(NotFoundError, match="--agents-dir"):
        PersonaRegistry.default(tmp_path / "nope")


def test_persona_round_trips_through_toml(tmp_path: Path) -> None:
    original = PersonaRegistry.default().get("Stacy")
    path = write(tmp_path, "stacy.toml", persona_to_toml(original))
    assert load_persona(path) == original
