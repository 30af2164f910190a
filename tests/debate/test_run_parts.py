"""The scheduler's small collaborators alone: pacing and the watcher's requests, seeds, the
budget rule over the transcript, the cast, the ballot's result."""

from __future__ import annotations

import asyncio
import random

import pytest

from townhall.debate.ballot import result_of, side_of, tally, vote_from
from townhall.debate.branching import SwitchBranch
from townhall.debate.cast import Cast
from townhall.debate.run_control import Pacing, RunControl
from townhall.debate.seeds import OneOff, Seeds, derive_seed
from townhall.debate.transcript import Transcript
from townhall.domain.branches import TurnTree
from townhall.domain.personas import Persona
from townhall.domain.spec import TownHallSpec
from townhall.domain.turns import Turn, TurnKind, TurnStatus
from townhall.engine.base import GenerationStats
from townhall.errors import ConfigError


def test_pacing_steps_while_paused_and_pauses_after_the_turn_while_running() -> None:
    pace = Pacing()
    assert not pace.held
    pace.step()  # running: the turn under way is the step
    assert not pace.held and pace.pause_after_turn
    pace.turn_begins()
    pace.turn_ends()
    assert pace.held
    pace.step()
    pace.step()
    for _ in range(2):
        assert not pace.held
        pace.turn_begins()
        pace.turn_ends()
    assert pace.held and pace.paused
    pace.resume()
    assert not pace.held and not pace.paused


async def test_requests_wake_the_loop_and_a_stop_drops_queued_ops() -> None:
    control = RunControl()
    control.pause()
    waiting = asyncio.create_task(control.wait_until_runnable())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    control.queue(SwitchBranch(1))
    await asyncio.wait_for(waiting, 1)
    control.stop()
    assert control.next_branch_op() is None and control.branch_ops
    await asyncio.wait_for(control.wait_until_runnable(), 1)  # a stop asked: nothing to wait for


def test_skip_without_a_generation_skips_the_next_speaker_once() -> None:
    control = RunControl()
    control.interrupt()  # nothing under way: nothing to cut
    assert control.cut is None
    control.skip()
    assert control.take_skip() and not control.take_skip()


def test_interjections_are_checked_and_queued() -> None:
    control = RunControl()
    assert control.interject("  What about the ferry? ").speaker == "Audience"
    with pytest.raises(ConfigError, match="needs some text"):
        control.interject("  ")
    with pytest.raises(ConfigError, match="one short line"):
        control.interject("Hi", speaker="Ann: loud")
    assert [i.text for i in control.interjections] == ["What about the ferry?"]


def test_seeds_keep_their_values_and_purposes() -> None:
    seeds = Seeds(7, random.Random(0))
    assert seeds.turn(4, 1, branch=1) == derive_seed(7, 4, 1, salt=0)
    assert seeds.turn(4, 0, branch=3) == derive_seed(7, 4, 0, salt=2)
    assert seeds.one_off(OneOff.SUMMARY, 5) == derive_seed(7, 5, 0, salt=1)
    assert seeds.one_off(OneOff.SPEAKER_CHOICE, 5) == derive_seed(7, 5, 0, salt=2)
    assert seeds.one_off(OneOff.MINUTES_REASON, 5) == derive_seed(7, 5, 0, salt=3)
    assert derive_seed(7, 4, 1, 2) == (7 * 1_000_003 + 4 * 7_919 + 104_729 + 2 * 15_485_863) % (2**31 - 1)
    unseeded = Seeds(None, random.Random(3))
    assert unseeded.turn(0, 0, 1) == random.Random(3).randrange(2**31 - 1)


def spoken(speaker: str, kind: TurnKind = TurnKind.AGENT, status: TurnStatus = TurnStatus.COMPLETE,
           text: str = "words", tokens: int = 10) -> Turn:
    return Turn(index=-1, speaker=speaker, kind=kind, content=text, status=status,
                stats=GenerationStats(generated_tokens=tokens))


def test_only_this_runs_turns_that_use_the_budget_are_spent() -> None:
    earlier = spoken("Ann")
    transcript = Transcript(TurnTree.linear([earlier]))
    for turn in (spoken("Bob"), spoken("Audience", TurnKind.AUDIENCE), spoken("Cy", status=TurnStatus.SKIPPED)):
        transcript.add(turn)
    assert [t.speaker for t in transcript.spent()] == ["Bob"]
    assert transcript.ended_by(TownHallSpec(motion="m", participants=["Ann"], max_turns=1), lambda: 0.0) == "max_turns"
    spec = TownHallSpec(motion="m", participants=["Ann"], max_turns=5, token_budget=10)
    assert transcript.ended_by(spec, lambda: 0.0) == "token_budget"


def test_the_closing_phrase_ends_only_when_said_in_this_run() -> None:
    said_before = spoken("Mo", TurnKind.MODERATOR, text="I call the question.")
    transcript = Transcript(TurnTree.linear([said_before]))
    spec = TownHallSpec(motion="m", participants=["Ann"], max_turns=None, closing_phrase="call the question")
    assert transcript.ended_by(spec, lambda: 0.0) is None
    transcript.add(spoken("Mo", TurnKind.MODERATOR, text="Now I CALL THE QUESTION."))
    assert transcript.ended_by(spec, lambda: 0.0) == "closing_phrase"
    assert transcript.said_anything


def test_the_cast_puts_the_moderator_first_and_refuses_a_missing_persona() -> None:
    people = [Persona(name=n, title="t", bio="b", style="s") for n in ("Ann", "Bob", "Mo")]
    cast = Cast.from_spec(TownHallSpec(motion="m", participants=["ann", "Bob"], moderator="Mo"), people)
    assert [p.name for p in cast.participants] == ["Mo", "Ann", "Bob"]
    assert cast.names([spoken("Dee", TurnKind.AUDIENCE)]) == ["Mo", "Ann", "Bob", "Audience", "Dee"]
    with pytest.raises(ConfigError, match="no such persona"):
        Cast.from_spec(TownHallSpec(motion="m", participants=["Zed"]), people)


def test_the_ballot_is_the_one_place_for_results_and_sides() -> None:
    assert (result_of(3, 2), result_of(2, 3), result_of(2, 2)) == ("carried", "defeated", "tied")
    assert (side_of(0.51), side_of(0.5)) == ("for", "against")
    counted = tally([vote_from("Ann", 0.9), vote_from("Bob", 0.1)])
    assert counted.result == "tied" and counted.announcement.startswith("The vote is tied, 1 to 1")
