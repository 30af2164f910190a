"""`townhall models` and `--model NAME` as a user meets them: the layouts of their own tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from model_layouts import NOT_GGUF, gguf_bytes, hf_cache, isolated_env, lmstudio_folder, ollama_store, truncated_gguf
from typer.testing import CliRunner

from townhall.cli import app


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    ollama_store(tmp_path / "ollama", {"tiny:latest": gguf_bytes(chat=True), "broken:latest": truncated_gguf()})
    hf_cache(tmp_path / "hf", "TheOrg/Tiny-GGUF", {"tiny-q4_k_m.gguf": gguf_bytes(), "page.gguf": NOT_GGUF})
    lmstudio_folder(tmp_path / "lmstudio", "pub/Solo-GGUF", {"solo.gguf": gguf_bytes(context=8192)})
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.gguf").write_bytes(gguf_bytes(name="Mine"))
    return isolated_env(tmp_path)


def test_models_json_lists_each_layout_with_its_facts(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["models", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_name = {m["name"]: m for m in report["models"] if m["source"] not in ("embedded", "package")}
    assert set(by_name) == {"ollama:tiny:latest", "ollama:broken:latest", "hf:TheOrg/Tiny-GGUF/tiny-q4_k_m.gguf",
                            "hf:TheOrg/Tiny-GGUF/page.gguf", "lmstudio:pub/Solo-GGUF/solo.gguf", "dir:mine.gguf"}
    tiny = by_name["ollama:tiny:latest"]
    assert tiny == {**tiny, "usable": True, "problem": None, "architecture": "llama", "parameters": "1M",
                    "quantisation": "Q4_K_M", "context_length": 2048, "chat_template": True, "prompt_format": "chat",
                    "size_bytes": len(gguf_bytes(chat=True))}
    assert Path(tiny["path"]).parent == Path(env["OLLAMA_MODELS"]) / "blobs"
    assert by_name["ollama:broken:latest"]["usable"] is False
    assert "truncated GGUF file" in by_name["ollama:broken:latest"]["problem"]
    assert by_name["hf:TheOrg/Tiny-GGUF/page.gguf"]["problem"] == "not a GGUF model file (bad magic bytes)"
    assert by_name["lmstudio:pub/Solo-GGUF/solo.gguf"]["prompt_format"] == "transcript"
    looked = {(p["source"], p["path"]) for p in report["looked_in"]}
    assert {("ollama", env["OLLAMA_MODELS"]), ("hf", env["HF_HUB_CACHE"]),
            ("lmstudio", env["LMSTUDIO_MODELS_DIR"]), ("dir", env["TOWNHALL_MODELS_DIR"])} <= looked


def test_models_plain_is_one_line_each_and_where_it_looked(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["models"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    tiny = next(line for line in lines if line.startswith("ollama:tiny:latest "))
    assert "llama · 1M · Q4_K_M" in tiny and "ctx 2048 · chat" in tiny
    broken = next(line for line in lines if line.startswith("ollama:broken:latest "))
    assert "unusable: truncated GGUF file" in broken
    assert lines[-1].startswith("looked in: ") and env["OLLAMA_MODELS"] in lines[-1]


def test_a_name_not_on_the_machine_is_one_line_before_any_model_loads(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "townhall", "run", "--model", "ollama:llama3.2", "--turns", "1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ollama:llama3.2:latest is not on this machine" in lines[0]
    assert env["OLLAMA_MODELS"] in lines[0] and "`ollama pull llama3.2` fetches it" in lines[0]


@pytest.mark.model
def test_a_debate_runs_on_a_model_named_as_ollama_names_it(tmp_path: Path, model_path: Path) -> None:
    """The embedded model pulled into a temporary Ollama store as `gemma3:270m`: `--model ollama:gemma3:270m`."""
    store = tmp_path / "ollama"
    (store / "blobs").mkdir(parents=True)
    digest = "sha256:" + "e" * 64  # the name, not a check: Townhall never re-hashes a blob
    (store / "blobs" / digest.replace(":", "-")).symlink_to(model_path)
    from model_layouts import link_ollama_manifest

    link_ollama_manifest(store, "gemma3", "270m", digest, model_path.stat().st_size)
    db = tmp_path / "th.db"
    result = subprocess.run(
        [sys.executable, "-m", "townhall", "run", "--model", "ollama:gemma3:270m", "--agents", "Walt,Priya",
         "--motion", "Ban leaf blowers.", "--n-ctx", "512", "--max-tokens", "16", "--threads", "2", "--turns", "2",
         "--seed", "3", "--json", "--db", str(db)],
        capture_output=True, text=True, timeout=300, env={**os.environ, **isolated_env(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    turns = [e for e in events if e["type"] == "turn"]
    assert [t["speaker"] for t in turns] == ["Walt", "Priya"] and events[-1]["reason"] == "max_turns"
    from townhall.store import Store

    with Store.open(db) as store_db:
        session = store_db.get_session(events[0]["session"])
    assert session.model_path == str(store / "blobs" / digest.replace(":", "-"))
