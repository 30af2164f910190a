"""The generate config at the edge, and the cleaning rules that decide what is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from townhall.errors import ConfigError, NotFoundError
from townhall.generate.cleaning import EXCLUDED, FAILED, TOO_SHORT, clean_turns, excluded_stem, judge
from townhall.generate.config import conversation_seed, load_config, topics
from townhall.paths import data_dir
from townhall.domain.personas import PersonaRegistry
from townhall.domain.turns import Turn, TurnKind, TurnStatus

BASE = """
motion = 'What does "{word}" mean?'
participants = ["Student", "Teacher"]
"""


def write(tmp_path: Path, text: str, name: str = "gen.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads_with_its_personas() -> None:
    path = data_dir("examples") / "generate" / "student_teacher.toml"
    config = load_config(path)
    assert load_config(Path("student_teacher")) == config  # shipped examples load by name
    words = topics(config)
    assert words[:3] == ["bridge", "leaf", "pocket"] and len(words) == 8
    assert config.exclude == ["relig", "sex", "gender", "politic", "kill"]
    personas = PersonaRegistry.default(config.agents_dir).resolve(config.persona_names())
    assert [p.name for p in personas] == ["Student", "Teacher"]
    spec = config.spec_for("leaf", 5)
    assert '"leaf"' in spec.motion and "{word}" not in spec.motion
    assert spec.title == "Word lesson: leaf" and spec.max_turns == config.turns and spec.seed == 5
    assert not spec.ballot  # a training conversation ends at its last turn: no probes, vote or minutes
    assert config.assistant_name() == "Teacher" and config.parallel is None


def test_words_file_is_relative_to_the_config_and_merged_once(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "w.txt").write_text("# physics\nforce\n\nEnergy\nbridge\n", encoding="utf-8")
    path = write(tmp_path, BASE + 'words = ["bridge"]\nwords_file = "lists/w.txt"\n')
    assert topics(load_config(path)) == ["bridge", "force", "Energy"]


def test_missing_word_placeholder_is_one_clear_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'motion = "No placeholder"\nparticipants = ["Student"]\nwords = ["a"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "motion" in message and "{word}" in message


def test_unknown_field_and_bad_min_turns_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'prompt_lines' is not a known field"):
        load_config(write(tmp_path, BASE + 'prompt_lines = ["x"]\n'))
    with pytest.raises(ConfigError, match=r"min_turns \(5\) is more than turns \(3\)"):
        load_config(write(tmp_path, BASE + "turns = 3\nmin_turns = 5\n"))


def test_missing_config_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="nope.toml: no such generate config file"):
        load_config(tmp_path / "nope.toml")


def test_missing_words_file_and_no_topics(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="words_file .*nope.txt: no such file"):
        topics(load_config(write(tmp_path, BASE + 'words_file = "nope.txt"\n')))
    with pytest.raises(ConfigError, match="no topics"):
        topics(load_config(write(tmp_path, BASE)))


def test_a_word_holding_an_excluded_stem_is_refused_up_front(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'words = ["leaf", "Politics"]\nexclude = ["politic"]\n')
    with pytest.raises(ConfigError, match="word 'Politics' contains the excluded stem 'Politic'"):
        topics(load_config(path))


def test_flag_overrides_replace_file_values(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + 'words = ["a"]\nseed = 3\nformat = "txt"\nout = "o.txt"\n')
    config = load_config(path)
    assert config.seed == 3 and config.format == "txt" and config.out == tmp_path.resolve() / "o.txt"
    config = load_config(path, seed=9, format="sharegpt", out=Path("x.jsonl"))
    assert config.seed == 9 and config.format == "sharegpt" and config.out == Path("x.jsonl")


def test_fingerprint_ignores_the_word_list_but_not_the_motion(tmp_path: Path) -> None:
    one = load_config(write(tmp_path, BASE + 'words = ["a"]\n'))
    more = load_config(write(tmp_path, BASE + 'words = ["a", "b"]\n', "b.toml"))
    other = load_config(write(tmp_path, BASE.replace("mean", "sound like") + 'words = ["a"]\n', "c.toml"))
    assert one.name != more.name and one.fingerprint() == more.fingerprint()
    assert other.fingerprint() != one.fingerprint()


def test_assistant_must_be_a_speaker_and_defaults_to_who_answers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="assistant 'Tutor' is not one of the speakers \\(Student, Teacher\\)"):
        load_config(write(tmp_path, BASE + 'assistant = "Tutor"\n'))
    assert load_config(write(tmp_path, BASE)).assistant_name() == "Teacher"  # the last participant
    moderated = load_config(write(tmp_path, BASE + 'moderator = "Moderator"\n'))
    assert moderated.assistant_name() == "Moderator"
    with pytest.raises(ConfigError, match="parallel"):
        load_config(write(tmp_path, BASE + "parallel = 0\n"))


def test_fingerprint_ignores_how_a_run_is_carried_out(tmp_path: Path) -> None:
    """`parallel` and `assistant` change speed and rendering, not which conversations a run
    holds: an output written before they existed resumes with them set."""
    plain = load_config(write(tmp_path, BASE + 'words = ["a"]\n'))
    tuned = load_config(write(tmp_path, BASE + 'words = ["a"]\nparallel = 4\nassistant = "Student"\n', "t.toml"))
    assert plain.fingerprint() == tuned.fingerprint() == "d2f6584a2f91d36a"  # as before these fields existed


def test_conversation_seeds_repeat_and_differ() -> None:
    assert conversation_seed(1, "leaf", 0) == conversation_seed(1, "leaf", 0)
    assert len({conversation_seed(1, "leaf", 0), conversation_seed(1, "leaf", 1), conversation_seed(1, "bear", 0),
                conversation_seed(2, "leaf", 0)}) == 4


def turn(index: int, content: str, status: TurnStatus = TurnStatus.COMPLETE, speaker: str = "A") -> Turn:
    return Turn(index=index, speaker=speaker, kind=TurnKind.AGENT, content=content, status=status)


def test_stems_match_case_insensitively_at_word_starts() -> None:
    turns = [turn(0, "A fine skill to have."), turn(1, "Some RELIGIOUS text.")]
    assert excluded_stem(turns, ["kill", "relig"]) == "relig"
    assert excluded_stem(turns[:1], ["kill"]) is None
    assert excluded_stem([turn(0, "They were killing time")], ["kill"]) == "kill"


def test_clean_turns_drop_repeats_empties_and_unfinished() -> None:
    turns = [
        turn(0, "A bridge crosses a river."),
        turn(1, "a bridge crosses a river", speaker="B"),
        turn(2, "...", speaker="A"),
        turn(3, "Half a thou", TurnStatus.INTERRUPTED),
        turn(4, "It joins two banks.", speaker="B"),
    ]
    assert [t.index for t in clean_turns(turns)] == [0, 4]


def test_judge_orders_reasons() -> None:
    good = [turn(0, "One bridge here."), turn(1, "Two banks there.", speaker="B")]
    assert judge(good, exclude=[], min_turns=2, end_reason="max_turns").keep
    short = judge(good[:1], exclude=[], min_turns=2, end_reason="max_turns")
    assert (short.keep, short.reason, short.clean_turns) == (False, TOO_SHORT, 1)
    assert judge(good, exclude=["two"], min_turns=2, end_reason="error").reason == EXCLUDED
    assert judge(good, exclude=[], min_turns=2, end_reason="error").reason == FAILED
    assert judge([], exclude=[], min_turns=0, end_reason="max_turns").reason == TOO_SHORT
