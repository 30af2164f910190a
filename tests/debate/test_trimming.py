"""Trimming a generated turn to the speaker's own words (seed 000's run-on is the case to beat)."""

from __future__ import annotations

from townhall.debate.trimming import is_degenerate, trim_turn

NAMES = ["Ann", "Bob", "Mayor Lee"]


def test_seed_000_run_on_into_code_is_cut() -> None:
    raw = " I'll try. !<EOS>\n\\end{code}\n\n\\begin{blockquote}\n\\begin{code}\nimport sys\nclass Answer:\n"
    assert trim_turn(raw, names=NAMES) == "I'll try. !"


def test_code_fence_and_imports_end_the_turn() -> None:
    assert trim_turn("Sure thing.\n```python\nprint(1)\n```", names=NAMES) == "Sure thing."
    assert trim_turn("Here goes\nimport os\nos.remove('x')", names=NAMES) == "Here goes"


def test_unknown_speaker_tag_line_is_cut() -> None:
    assert trim_turn("We need a bridge.\nSarah: Yes we do!", names=NAMES) == "We need a bridge."


def test_dangling_partial_tag_is_removed() -> None:
    assert trim_turn("A fine point.\nMay", names=NAMES) == "A fine point."
    assert trim_turn("A fine point.\nBob", names=NAMES) == "A fine point."
    assert trim_turn("A fine point.\nBobcats roam here.", names=NAMES) == "A fine point.\nBobcats roam here."


def test_trailing_whitespace_and_engine_markers() -> None:
    assert trim_turn("  Well said.   \n", names=NAMES) == "Well said."
    assert trim_turn("Agreed.<end_of_turn>\nuser", markers=["<end_of_turn>"]) == "Agreed."
    assert trim_turn("Done [EOS] more", names=NAMES) == "Done"


def test_unfinished_sentence_is_dropped_only_when_out_of_tokens() -> None:
    text = "The bridge is old. It needs repairs before the"
    assert trim_turn(text, finish_reason="length") == "The bridge is old."
    assert trim_turn(text, finish_reason="stop") == text
    # Nothing whole to keep: keep what there is rather than nothing.
    assert trim_turn("It needs repairs before the", finish_reason="length") == "It needs repairs before the"
    assert trim_turn('She said "no way!" and then', finish_reason="length") == 'She said "no way!"'


def test_stage_directions_are_not_speech() -> None:
    assert trim_turn("(laughing) That's rich.", names=NAMES) == "That's rich."
    assert trim_turn("(pointing out)", names=NAMES) == ""
    assert trim_turn("*nods* [applause] Fine.", names=NAMES) == "Fine."


def test_blank_line_ends_the_turn() -> None:
    assert trim_turn("First thought.\n\nSomething unrelated entirely.", names=NAMES) == "First thought."


def test_degenerate_turns() -> None:
    assert is_degenerate("", [])
    assert is_degenerate("... !!", [])
    assert is_degenerate("We need a bridge!", ["we need a  bridge", "other"])
    assert not is_degenerate("We need a bridge now", ["We need a bridge"])
    assert not is_degenerate("🙂 ok", [])
