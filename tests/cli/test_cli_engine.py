"""The installed command: version, help, doctor, bench, bad model paths, the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from townhall import __version__

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = [
    "doctor", "models", "bench", "run", "tui", "agents", "sessions", "search", "export", "import", "resume", "generate",
]


def townhall(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "townhall", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd,
    )


def test_version_and_module_entry() -> None:
    result = townhall("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"townhall {__version__}"


def test_help_documents_every_subcommand() -> None:
    result = townhall("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert f" {name} " in result.stdout, f"{name} missing from --help"
    for name in ("doctor", "bench", "run"):
        sub = townhall(name, "--help")
        assert sub.returncode == 0 and "--model" in sub.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "model file not found"), (b"not a model at all, just text\n", "bad magic"),
     (b"GGUF\x03\x00", "only 6 bytes")],
)
def test_bad_model_paths_get_one_line_and_no_traceback(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    for args in (["doctor", "--model", str(path)], ["run", "--model", str(path), "--turns", "1"]):
        result = townhall(*args)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], result.stderr
        assert "Traceback" not in result.stderr


def test_model_from_environment_variable(tmp_path: Path) -> None:
    missing = tmp_path / "from-env.gguf"
    result = townhall("doctor", env={"TOWNHALL_MODEL": str(missing)})
    assert result.returncode == 1 and str(missing) in result.stderr


@pytest.mark.model
def test_doctor_json_tells_the_truth(model_path: Path) -> None:
    result = townhall("doctor", "--json", "--model", str(model_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "llama.cpp must not write to the terminal"
    report = json.loads(result.stdout)
    import llama_cpp

    assert report["model_path"] == str(model_path)
    assert report["model_sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert report["architecture"] == "gemma3" and report["trained_context"] == 32768
    assert report["has_chat_template"] is False and report["prompt_format"] == "transcript"
    assert any(m["name"] == "embedded" and m["usable"] for m in report["models_found"]["models"])
    assert report["llama_cpp_python_version"] == llama_cpp.__version__
    assert report["gpu_offload_supported"] == bool(llama_cpp.llama_supports_gpu_offload())
    if not report["gpu_offload_supported"]:
        assert report["layers_offloaded"] == 0 and report["device"].startswith("CPU")
    assert report["threads"] >= 1 and report["threads"] == report["physical_cores"]


@pytest.mark.model
def test_bench_json_has_the_promised_keys(model_path: Path) -> None:
    result = townhall("bench", "--agents", "2", "--turns", "4", "--tokens", "6", "--json", "--model", str(model_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    names = [way["name"] for way in summary["ways"]]
    assert names == ["reprefill", "save_state", "townhall"]
    keys = {"name", "total_s", "prefill_tokens", "generated_tokens", "turn_s", "restore_ms_max"}
    for way in summary["ways"]:
        assert set(way) == keys | ({"probes", "probe_s", "probe_tokens"} if way["name"] == "townhall" else set())
        assert len(way["turn_s"]) == 4 and way["generated_tokens"] > 0
    town = summary["ways"][2]
    # The townhall way probes each speaker after its turn: only the ballot cue is evaluated.
    assert town["probes"] == 4 and 0 < town["probe_tokens"] <= 4 * 40 and summary["probe/debate_pct"] > 0
    assert town["prefill_tokens"] < summary["ways"][0]["prefill_tokens"]
    assert "reprefill/townhall" in summary and "save_state/townhall" in summary
    assert summary["townhall_prefill_minus_new_max"] <= 2


def test_bench_rejects_bad_arguments() -> None:
    result = townhall("bench", "--ways", "reprefill")
    assert result.returncode == 1 and "--ways" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.wheel
def test_wheel_carries_its_data_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    if build.returncode != 0:  # hatchling may be missing from the venv: build in isolation instead
        build = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
            capture_output=True, text=True, timeout=600,
        )
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("townhall-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("townhall/_data/agents/") and n.endswith(".toml") for n in names)
    assert any(n.startswith("townhall/_data/db/") and n.endswith(".sql") for n in names)
    assert any(n.startswith("townhall/_data/themes/") for n in names)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "TOWNHALL_DB": str(outside / "t.db")}
    code = (
        "import townhall, townhall.paths as p; from pathlib import Path; "
        "assert '_data' in str(p.data_dir('agents')), p.data_dir('agents'); "
        "assert str(Path(townhall.__file__)).startswith(%r); print('ok')" % str(target)
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=outside,
                           timeout=60)
    assert probe.returncode == 0 and probe.stdout.strip() == "ok", probe.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "townhall", "agents", "list"], capture_output=True, text=True, env=env, cwd=outside,
        timeout=120,
    )
    assert listing.returncode == 0 and "Stacy" in listing.stdout, listing.stderr
    sessions = subprocess.run(
        [sys.executable, "-m", "townhall", "sessions", "list"], capture_output=True, text=True, env=env, cwd=outside,
        timeout=120,
    )
    assert sessions.returncode == 0, sessions.stderr
