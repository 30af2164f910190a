"""The scorer on hand-written turns: each rule of a clean turn can fail, and the debate figures add up."""

from __future__ import annotations

import pytest

from townhall.debate.quality import (
    ECHO,
    EMPTY,
    FOREIGN_TAG,
    MARKUP,
    NARRATION,
    TOO_SHORT,
    DebateScore,
    answers,
    check_turn,
    echo_share,
    score_debate,
)

NAMES = ["Margaret", "Walt", "Priya", "Jax"]
EARLIER = ["Walt: the park will cost us forty thousand dollars a year to mow and light."]


def check(text: str, speaker: str = "Walt", earlier: list[str] | None = None):
    return check_turn(text, speaker, NAMES, earlier if earlier is not None else [])


def test_a_substantive_turn_is_clean() -> None:
    verdict = check("Priya, a park is nice, but who pays to fix the fence in year ten?", earlier=EARLIER)
    assert verdict.clean and verdict.reason is None and not verdict.echo


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", EMPTY),
        ("   ", EMPTY),
        ("I agree.", TOO_SHORT),
        ("Yes!", TOO_SHORT),
        ("I think so. Priya: no, you are wrong about the cost.", FOREIGN_TAG),
        ("We need a budget first. jax : fine by me", FOREIGN_TAG),
        ("*nods slowly and looks at the crowd*", NARRATION),
        ("(laughs) [applause]", NARRATION),
        ("Walt nods and sits back down.", NARRATION),
        ("The room falls silent for a moment.", NARRATION),
        ("Here is the plan: ```python print(1)```", MARKUP),
        ("The cost is $\\frac{40000}{12}$ dollars a month.", MARKUP),
        ("We need \\begin{itemize} more trees everywhere", MARKUP),
    ],
)
def test_each_rule_can_fail(text: str, reason: str) -> None:
    verdict = check(text)
    assert not verdict.clean and verdict.reason == reason


def test_own_tag_is_not_foreign() -> None:
    assert check("As I said, Walt: the engineer, wants the numbers first.", speaker="Walt").clean


def test_speech_that_mentions_a_name_is_not_narration() -> None:
    assert check("Walt, you said the park costs too much. I disagree.", speaker="Priya").clean


def test_echo_is_half_the_trigrams_already_said() -> None:
    said = ["I think it's time for more parking downtown."]
    repeat = "I think it's time for more parking."
    assert echo_share(repeat, said) == 1.0
    verdict = check(repeat, earlier=said)
    assert not verdict.clean and verdict.reason == ECHO and verdict.echo
    # Under half of the 3-grams reused: not an echo.
    fresh = "I think it's a bad idea to pave the only green lot in town."
    assert echo_share(fresh, said) < 0.5
    assert check(fresh, earlier=said).clean


def test_echo_boundary_exactly_half() -> None:
    said = ["alpha beta gamma delta"]  # 3-grams: (alpha beta gamma), (beta gamma delta)
    turn = "alpha beta gamma zeta eta"  # 3 trigrams, 1 said -> 1/3
    assert not check(turn, earlier=said).echo
    turn = "alpha beta gamma delta zeta"  # 3 trigrams, 2 said -> 2/3
    assert check(turn, earlier=said).echo
    turn = "beta gamma delta omega"  # 2 trigrams, 1 said -> exactly half
    assert check(turn, earlier=said).echo


def test_answers_by_name_or_reply_opening() -> None:
    assert answers("Priya, the bakery will do fine.", "Walt", "Jax", NAMES)
    assert answers("But the lot floods every spring.", "Walt", "Jax", NAMES)
    assert answers("I disagree with the last point.", "Walt", "Jax", NAMES)
    assert not answers("The park should have more trees.", "Walt", "Jax", NAMES)
    assert not answers("Walt here. Trees are good.", "Walt", None, ["Walt"])


def test_debate_figures() -> None:
    turns = [
        ("Margaret", "Opening statements, please. Walt, you first.", False),
        ("Walt", "The park will cost forty thousand dollars a year to keep up.", True),
        ("Priya", "Walt, families will come downtown and spend money at my shop.", True),
        ("Jax", "I agree.", True),
        ("Walt", "The park will cost forty thousand dollars a year to keep.", True),
    ]
    score, scored = score_debate(turns, NAMES, seconds=8.0)
    assert score.turns == 4  # the scripted line is context, not scored
    assert [s.clean for s in scored] == [True, True, False, False]
    assert [s.reason for s in scored] == [None, None, TOO_SHORT, ECHO]
    assert score.clean_rate == 0.5 and score.echo_rate == 0.25
    assert score.mean_words == (12 + 11 + 2 + 11) / 4
    assert score.seconds_per_turn == 2.0
    assert score.answered == 2  # Priya names Walt; "I agree" opens a reply; the echo does neither
    # Bigrams: 11 + 10 + 1 + 10 = 32; the echo's 10 were all in Walt's first turn.
    assert score.bigrams == 32
    assert score.distinct_bigrams == 32 - 10
    assert score.figures()["failures"] == {ECHO: 1, TOO_SHORT: 1}


def test_rejected_turns_do_not_count_as_said() -> None:
    turns = [
        ("Walt", "I agree. I agree. I agree.", True),  # nothing said before it, so no echo
        ("Jax", "Walt: I agree. I agree.", True),  # foreign tag: rejected, so not 'said'
        ("Priya", "I agree. I agree, Walt.", True),
    ]
    score, scored = score_debate(turns, NAMES)
    assert scored[0].clean and not scored[1].clean
    assert scored[2].echo  # echo of Walt's clean turn, whatever Jax said


def test_merge_weighs_every_turn_alike() -> None:
    a = DebateScore(turns=2, clean=2, words=20, bigrams=18, distinct_bigrams=18, seconds=2.0)
    b = DebateScore(turns=8, clean=4, words=40, bigrams=32, distinct_bigrams=16, seconds=8.0, reasons={ECHO: 4})
    total = DebateScore.merge([a, b])
    assert total.clean_rate == 0.6 and total.mean_words == 6.0 and total.distinct_2 == 34 / 50
    assert total.seconds_per_turn == 1.0 and total.reasons == {ECHO: 4}
