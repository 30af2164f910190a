"""The user's TUI settings: theme, stats pane, reading pace and key remapping, in `config.toml`
in the config dir.

Example::

    theme = "townhall-paper"
    pace_wpm = 300          # words per minute each finished turn is held for; 0 = flat out

    [keymap]
    "townhall.pause" = "p,f5"
    "townhall.interrupt" = "ctrl+x"

Binding ids are listed by `townhall tui --help` and in the command palette.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from townhall.debate.reading_pace import DEFAULT_WPM, MAX_WPM, ReadingPace
from townhall.errors import ConfigError, validation_message
from townhall.paths import user_config_dir, write_atomic


class TuiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str | None = None
    keymap: dict[str, str] = Field(default_factory=dict)
    stats_position: Literal["right", "bottom", "hidden"] = "right"
    # The reading pace (debate/reading_pace.py): each finished turn stays on show for the time it
    # takes to read at this many words per minute before the next speaker starts; 0 is flat out.
    # `tui --pace` overrides it for one window; the pace keys change it and are remembered here.
    pace_wpm: int = Field(DEFAULT_WPM, ge=0, le=MAX_WPM)

    def reading_pace(self) -> ReadingPace:
        """The pace `townhall tui` starts at without `--pace`."""
        return ReadingPace(self.pace_wpm or None)


def config_path() -> Path:
    return user_config_dir() / "config.toml"


def load_config(path: Path | None = None) -> TuiConfig:
    """Read the config file; a missing file is the default config, a broken one an error."""
    path = path or config_path()
    if not path.exists():
        return TuiConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    try:
        return TuiConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, str(path), kind="config field")) from exc


def save_config(config: TuiConfig, path: Path | None = None) -> None:
    """Write atomically (temp file + rename), so a crash or a full disk never leaves half a config;
    raises OSError when it cannot be written (the app says so and goes on)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    existing: dict[str, object] = {}
    if path.exists():
        try:
            existing = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            existing = {}
    existing.update(config.model_dump(exclude_none=True))
    write_atomic(path, tomli_w.dumps(existing))
