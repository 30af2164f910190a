"""The new-town-hall dialog offers the models found on the machine, with their facts."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_layouts import gguf_bytes, isolated_env, ollama_store, truncated_gguf
from test_tui_support import SIZE, make_app
from textual.widgets import Input, Select

from townhall.engine.discovery import discover
from townhall.tui.screens.new_townhall import NewTownhall, NewTownhallScreen


async def test_the_dialog_offers_the_usable_models_found_and_a_pick_fills_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = isolated_env(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ollama_store(tmp_path / "ollama", {"tiny:latest": gguf_bytes(chat=True), "broken:latest": truncated_gguf()})
    found = [m for m in discover(env, home=tmp_path).models() if m.candidate.source == "ollama"]
    app = make_app(turns=1)
    chosen: list[NewTownhall | None] = []
    async with app.run_test(size=SIZE) as pilot:
        screen = app.debate_screen
        app.push_screen(NewTownhallScreen(app.available_personas, screen.debate.spec, None, models=found),
                        chosen.append)
        await pilot.pause()
        select = app.screen.query_one("#nt-found", Select)
        labels = [str(prompt) for prompt, _value in select._options[1:]]
        size = len(gguf_bytes(chat=True))
        assert labels == [f"ollama:tiny:latest — llama · 1M · Q4_K_M · {size} B · ctx 2048 · chat"]  # not broken
        select.value = "ollama:tiny:latest"
        await pilot.pause()
        assert app.screen.query_one("#nt-model", Input).value == "ollama:tiny:latest"
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert chosen and chosen[0] is not None and chosen[0].engine_config is not None
    assert chosen[0].engine_config.model == "ollama:tiny:latest"


async def test_no_models_found_leaves_the_dialog_as_it_was() -> None:
    app = make_app(turns=1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, NewTownhallScreen) and not app.screen.query("#nt-found")
