"""`townhall bench regenerate`: the edited script, the summary, the printed table, the
command's argument checks, and one small run on the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from townhall.bench.report import branch_lines, summarize_branches
from townhall.bench.script import scripted_turns, transcript


def townhall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "townhall", *args], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ))


def test_an_edit_changes_the_prompts_only_from_the_edited_line_on() -> None:
    plain = scripted_turns(3, 9)
    edited = scripted_turns(3, 9, {4: "A different line."})
    assert edited[:5] == plain[:5]
    for before, after in zip(plain[5:], edited[5:], strict=True):
        shared = before.prompt[: before.prompt.index(transcript(3, 5).splitlines()[4])]
        assert after.prompt.startswith(shared) and after.prompt != before.prompt
        assert "A different line." in after.prompt
    assert transcript(3, 2) == "".join(t.prompt.split("\n\n", 1)[1] for t in plain[2:3]).removesuffix("Cleo:")
    with pytest.raises(ValueError, match="between 2 and"):
        transcript(1, 3)


def test_the_summary_and_the_table() -> None:
    regenerated = [
        {"turns": 10, "speaker": "Bram", "after_ballot": False, "prompt_tokens": 400, "normal_prefill": 30,
         "normal_ms": 900.0, "normal_decode_ms": 800.0, "prefill_tokens": 0, "evaluated_tokens": 40,
         "generated_tokens": 40, "ms": 810.0, "restore_ms": 0.0},
        {"turns": 40, "speaker": "Dev", "after_ballot": True, "prompt_tokens": 1400, "normal_prefill": 30,
         "normal_ms": 1000.0, "normal_decode_ms": 850.0, "prefill_tokens": 1, "evaluated_tokens": 41,
         "generated_tokens": 40, "ms": 900.0, "restore_ms": 9.5},
    ]
    after = [{"speaker": "Ada", "prompt_tokens": 800, "from_edit_tokens": 40, "prefill_tokens": 38, "ms": 1000.0,
              "restore_ms": 8.0},
             {"speaker": "Bram", "prompt_tokens": 820, "from_edit_tokens": 60, "prefill_tokens": 62, "ms": 1100.0,
              "restore_ms": 8.0}]
    summary = summarize_branches(regenerated, after, edit_at=20)
    assert summary["regenerate_prefill_max"] == 1 and summary["regenerate_prefill_spread"] == 1
    assert summary["regenerate/normal_ms_mean"] == round((0.9 + 0.9) / 2, 3)
    assert summary["edit_next_round_prefill/prompt_pct"] == round(100 * 100 / 1620, 1)
    assert summary["edit_next_round_prefill_minus_from_edit_max"] == 2
    lines = branch_lines(summary)
    assert lines[1].split()[:2] == ["turn", "10"] and lines[2].startswith("turn 40 +ballot")
    assert lines[2].split()[-3:] == ["1", "41", "900.0"]
    assert lines[3].startswith("after edit of #20") and lines[4].split() == ["Ada", "800", "40", "38", "1000.0"]
    assert "regenerate_prefill_max: 1" in lines


def test_bad_turn_counts_are_one_line_errors() -> None:
    for args, words in ((("--at", "ten"),  "--at takes turn counts"), (("--at", "0"), "at least 1"),
                        (("--turns", "8", "--at", "4,12"), "raise --turns to at least 12"),
                        (("--turns", "8", "--at", "4", "--edit-at", "8"), "--edit-at 8")):
        result = townhall("bench", "regenerate", *args)
        assert result.returncode == 1 and words in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_the_old_flag_says_so_then_checks_the_same() -> None:
    result = townhall("bench", "--regenerate", "--turns", "8", "--at", "4", "--edit-at", "8")
    assert result.returncode == 1
    note, error = result.stderr.strip().splitlines()
    assert "deprecated" in note and "townhall bench regenerate" in note
    assert "--edit-at 8" in error


@pytest.mark.model
def test_regenerating_costs_no_prefill_and_an_edit_only_what_follows_it(model_path: Path) -> None:
    result = townhall("bench", "regenerate", "--agents", "2", "--turns", "6", "--at", "2,6", "--edit-at", "2",
                      "--tokens", "6", "--json", "--model", str(model_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [r["turns"] for r in summary["regenerate"]] == [2, 6]
    assert [r["after_ballot"] for r in summary["regenerate"]] == [False, True]
    assert summary["regenerate_prefill_max"] == 0  # the prompt-end checkpoint covers the prompt
    assert all(r["evaluated_tokens"] == r["generated_tokens"] > 0 for r in summary["regenerate"])
    for agent in summary["edit"]["next_round"]:
        assert agent["prefill_tokens"] <= agent["from_edit_tokens"] + 2
        assert agent["prefill_tokens"] < agent["prompt_tokens"] / 2
