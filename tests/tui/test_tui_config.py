"""The TUI's config file and theme files: defaults, round trip, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from townhall.errors import ConfigError
from townhall.paths import data_dir
from townhall.tui.config import TuiConfig, config_path, load_config, save_config
from townhall.tui.themes import load_theme_file, load_themes


def test_missing_config_is_the_default() -> None:
    assert not config_path().exists()
    assert load_config() == TuiConfig()


def test_config_round_trip() -> None:
    save_config(TuiConfig(theme="townhall-paper", keymap={"townhall.pause": "f6"}, stats_position="bottom"))
    assert load_config() == TuiConfig(theme="townhall-paper", keymap={"townhall.pause": "f6"}, stats_position="bottom")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("theme = ", "not valid TOML"),
        ("colour = 'red'", "config field 'colour'"),
        ("stats_position = 'left'", "config field 'stats_position'"),
        ("[keymap]\n'townhall.pause' = 3", "config field 'keymap.townhall.pause'"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_field(text: str, expected: str) -> None:
    config_path().parent.mkdir(parents=True, exist_ok=True)
    config_path().write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert expected in message and str(config_path()) in message and "\n" not in message


def test_shipped_themes_load_and_one_is_light() -> None:
    themes, problems = load_themes([data_dir("themes")])
    assert problems == []
    assert len(themes) >= 3
    assert any(not t.dark for t in themes) and any(t.dark for t in themes)


def test_broken_user_theme_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("name = 'bad'\nprimary = 'not-a-colour'\n")
    (tmp_path / "good.toml").write_text("name = 'good'\nprimary = '#123456'\ndark = false\n")
    themes, problems = load_themes([tmp_path])
    assert [t.name for t in themes] == ["good"]
    assert len(problems) == 1 and "bad.toml" in problems[0] and "primary" in problems[0]
    with pytest.raises(ConfigError, match="primary"):
        load_theme_file(tmp_path / "bad.toml")


def test_user_theme_appears_in_the_app(tmp_path: Path) -> None:
    import asyncio

    from test_tui_support import SIZE, make_app

    folder = config_path().parent / "themes"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text("name = 'mine'\nprimary = '#ff00ff'\n")

    async def run() -> set[str]:
        app = make_app(turns=1)
        async with app.run_test(size=SIZE):
            return set(app.available_themes)

    assert "mine" in asyncio.run(run())


def _townhall(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "townhall", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_tui_command_bad_file_is_one_line() -> None:
    result = _townhall("tui", "/nowhere/hall.toml")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "/nowhere/hall.toml" in lines[0] and "Traceback" not in result.stderr


def test_tui_command_bad_config_is_one_line() -> None:
    config_path().parent.mkdir(parents=True, exist_ok=True)
    config_path().write_text("theme = 3\n")
    result = _townhall("tui")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "config.toml" in lines[0] and "theme" in lines[0]


def test_tui_help_lists_every_binding_id() -> None:
    from townhall.tui.bindings import ACTIONS

    result = _townhall("tui", "--help")
    assert result.returncode == 0
    for action in ACTIONS:
        assert action.id in result.stdout
