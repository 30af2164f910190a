"""bench --generate's bookkeeping on scripted engines: the same conversations at each N,
what differs from N=1, what is broken; and the command's bad input in one line."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from townhall.bench.generate import TOPICS, bench_specs, report_lines, run_generate_bench
from townhall.engine.base import GenerationRequest
from townhall.engine.scripted import ScriptedEngine
from townhall.domain.personas import PersonaRegistry


def topic(request: GenerationRequest) -> str:
    return next(w for w in TOPICS if f'"{w}"' in request.prompt)


def engine_for(n: int, changed: str | None = None, broken: str | None = None) -> ScriptedEngine:
    counters: dict[str, itertools.count[int]] = {}

    def reply(request: GenerationRequest) -> str:
        word = topic(request)
        k = next(counters.setdefault(word, itertools.count(1)))
        if word == broken:
            raise RuntimeError("fell over")
        flavour = "batched" if (n > 1 and word == changed) else "plain"
        return f"Remark {k} on the {word}, {flavour} reason number {k}."

    return ScriptedEngine(reply)


async def test_the_same_conversations_at_each_n_against_n_1() -> None:
    specs = bench_specs(4, turns=2, tokens=20, n_ctx=1024)
    assert [s.sampling.temperature for s in specs] == [0.0] * 4 and len({s.motion for s in specs}) == 4
    personas = PersonaRegistry.default().resolve(["Student", "Teacher"])
    made: list[int] = []

    def make(n: int) -> ScriptedEngine:
        made.append(n)
        return engine_for(n, changed="leaf", broken="pocket" if n == 4 else None)

    summary = await run_generate_bench(make, specs, personas, [4, 2])
    assert made == [1, 4, 2]  # N=1 first, always, each on its own engine
    runs = {row["parallel"]: row for row in summary["runs"]}
    assert (runs[1]["differ_from_1"], runs[2]["differ_from_1"], runs[4]["differ_from_1"]) == (0, 1, 2)
    assert (runs[1]["broken"], runs[2]["broken"], runs[4]["broken"]) == (0, 0, 1)
    assert runs[1]["tokens"] > 0 and runs[1]["speedup"] == 1.0
    assert runs[1]["turns"] == 8 and runs[1]["unclean_turns"] == 0
    lines = report_lines(summary)
    assert lines[0].startswith("4 conversations") and len(lines) == 3 + 3


def test_bad_parallel_list_is_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "townhall", "bench", "generate", "--parallel", "1,x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "townhall: error: --parallel '1,x': give whole numbers separated by commas, e.g. 1,4,8")


def test_the_old_flag_says_so_then_checks_the_same() -> None:
    result = subprocess.run([sys.executable, "-m", "townhall", "bench", "--generate", "--parallel", "1,x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    note, error = result.stderr.strip().splitlines()
    assert "deprecated" in note and "townhall bench generate" in note
    assert error == "townhall: error: --parallel '1,x': give whole numbers separated by commas, e.g. 1,4,8"


def test_too_many_conversations() -> None:
    with pytest.raises(ValueError, match="between 1 and 32 conversations"):
        bench_specs(33, turns=2, tokens=8, n_ctx=1024)


def test_rows_without_sharing_are_labelled() -> None:
    row = {"parallel": 8, "seconds": 1.0, "tokens": 10, "tokens_per_s": 10.0, "speedup": 1.0, "differ_from_1": 0,
           "broken": 0, "unclean_turns": 0, "turns": 4}
    summary = {"conversations": 2, "runs": [{**row, "parallel": 1, "unshared": False}, {**row, "unshared": False},
                                            {**row, "unshared": True}]}
    lines = report_lines(summary)
    assert [line.split()[0] for line in lines[2:5]] == ["1", "8", "8*"]
    assert lines[-1].startswith("N*: batched without prefix sharing")
    assert not report_lines({"conversations": 2, "runs": summary["runs"][:2]})[-1].startswith("N*")
