"""Theme files from `themes/`, turned into Textual themes.

Themes live as TOML files beside the persona files so a user (or a packager) can add
one without touching code; each file is validated here so a typo names the file and
the field instead of failing inside Textual's colour parser.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from textual.color import Color, ColorParseError
from textual.theme import Theme

from townhall.errors import ConfigError, validation_message
from townhall.paths import data_dir, user_config_dir

DEFAULT_THEME = "townhall-night"


class ThemeFile(BaseModel):
    """One theme file; colour fields are any colour Textual can parse."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dark: bool = True
    primary: str
    secondary: str | None = None
    accent: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    foreground: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    variables: dict[str, str] = {}

    @field_validator(
        "primary", "secondary", "accent", "warning", "error", "success",
        "foreground", "background", "surface", "panel",
    )
    @classmethod
    def _is_colour(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Color.parse(value)
            except ColorParseError as exc:
                raise ValueError(f"not a colour: {value!r}") from exc
        return value

    def to_theme(self) -> Theme:
        return Theme(**self.model_dump())


def load_theme_file(path: Path) -> Theme:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return ThemeFile.model_validate(raw).to_theme()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read theme file ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, str(path), kind="theme field")) from exc


def theme_dirs() -> list[Path]:
    """Built-in themes first, then the user's, so a user file of the same name wins."""
    return [data_dir("themes"), user_config_dir() / "themes"]


def load_themes(dirs: list[Path] | None = None) -> tuple[list[Theme], list[str]]:
    """All themes found, plus one problem line per file that could not be loaded.

    A broken user theme must not stop the app from opening, so problems are
    returned for the app to show rather than raised.
    """
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for folder in dirs if dirs is not None else theme_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems
