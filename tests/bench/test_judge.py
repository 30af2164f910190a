"""The faithfulness judge's parts that need no model: where its model comes from, the hand
labels it is checked against, how agreement and the faithfulness figures are counted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from townhall.bench import judge_model
from townhall.bench.faithfulness import SpokenTurn, check_targets, tally_debate
from townhall.bench.judge import MIN_AGREEMENT, Verdict, agreement, load_labels
from townhall.errors import NotFoundError


def verdict(side: str, reason: bool = True, relevant: bool = True) -> Verdict:
    return Verdict(side, reason, relevant, (0.0, 0.0, 0.0), 0.0, 0.0)  # type: ignore[arg-type]


def test_parts_join_into_the_checked_file_or_nothing(tmp_path: Path) -> None:
    parts = []
    for number, data in enumerate((b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5), start=1):
        part = tmp_path / f"part{number}.bin"
        part.write_bytes(data)
        parts.append(part)
    whole = b"".join(p.read_bytes() for p in parts)
    target = tmp_path / "cache" / "judge.gguf"
    assert judge_model.join_parts(parts, target, hashlib.sha256(whole).hexdigest()) == target
    assert target.read_bytes() == whole
    other = tmp_path / "cache" / "bad.gguf"
    with pytest.raises(NotFoundError, match="do not join into the expected file"):
        judge_model.join_parts(parts, other, "0" * 64)
    assert not other.exists() and not list(other.parent.glob("*.partial"))


def test_a_missing_judge_is_one_line_naming_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(judge_model, "PART_MODULE", "townhall_no_such_judge_part{}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(NotFoundError, match=r"part 1 .*make judge"):
        judge_model.judge_model_path()
    with pytest.raises(NotFoundError, match="no such file"):
        judge_model.judge_model_path(tmp_path / "missing.gguf")


def test_the_hand_labels_cover_every_answer() -> None:
    labels = load_labels()
    assert len(labels) >= 40 and len({label.motion for label in labels}) >= 6
    assert {label.side for label in labels} == {"for", "against", "neither"}
    assert {label.reason for label in labels} == {True, False} and {label.relevant for label in labels} == {True, False}
    bare = [label for label in labels if label.side != "neither" and not label.reason]  # "I am for the motion."
    nonsense = [label for label in labels if not label.relevant]
    assert len(bare) >= 5 and len(nonsense) >= 5


def test_agreement_counts_each_answer_and_names_each_miss() -> None:
    labels = load_labels()[:4]
    right = [verdict(label.side, label.reason, label.relevant) for label in labels]
    assert agreement(labels, right).overall == 1.0 and agreement(labels, right).is_measure
    wrong = [verdict("neither" if label.side != "neither" else "for", label.reason, label.relevant) for label in labels]
    scored = agreement(labels, wrong)
    assert scored.side == 0.0 and scored.reason == 1.0 and abs(scored.overall - 2 / 3) < 1e-9
    assert not scored.is_measure and scored.overall < MIN_AGREEMENT and len(scored.misses) == 4
    assert scored.misses[0].startswith("side: ")


def test_faithfulness_figures_from_verdicts_readings_and_votes() -> None:
    turns = [SpokenTurn("Walt", "against", "a"), SpokenTurn("Walt", "against", "b"), SpokenTurn("Walt", "against", "c"),
             SpokenTurn("Priya", "for", "d"), SpokenTurn("Priya", "for", "e"), SpokenTurn("Ines", None, "f")]
    verdicts = [verdict("against"), verdict("for", reason=False), verdict("against"),
                verdict("for"), verdict("neither", relevant=False), verdict("for")]
    readings = {"Walt": [0.6, 0.2], "Priya": [0.5, 0.9]}
    tally = tally_debate(turns, verdicts, readings, {"Walt": "against", "Priya": "against", "Ines": "for"})
    f = tally.figures()
    assert (f["sided_turns"], f["judged_turns"]) == (5, 6)
    assert f["side_match"] == round(3 / 5, 3) and f["contradiction"] == round(1 / 5, 3)
    assert f["reasons"] == round(5 / 6, 3) and f["relevance"] == round(5 / 6, 3)
    # Walt (2 of 3 turns his side) voted his side; Priya (1 of 2: not a majority) did not.
    assert f["vote_agreement"] == 0.5 and f["vote_agreement_faithful"] == 1.0 and f["faithful_speakers"] == "1/2"
    assert f["stance_moved_mean"] == round((0.4 + 0.4) / 2, 3)  # both moved toward their own side
    assert {s["name"]: s["matched"] for s in f["speakers"]} == {"Walt": "2/3", "Priya": "1/2"}
    met = check_targets(f)
    assert not met["side_match"] and met["relevance"] is False and met["vote_agreement_faithful"]
