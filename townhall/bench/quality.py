"""`townhall bench --quality`: how good the debate is, measured on fixed town halls.

K town halls from a shipped list (`examples/bench/quality_motions.toml`: motion, four
participants, a moderator, stances and a fixed seed each) run through the same
`Scheduler` and engine as `townhall run`, and each is scored with
`townhall.debate.quality`. Lines the scheduler writes itself (the agenda's moderator
lines) are context, not scored: only what the model wrote is counted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from townhall.engine.base import Engine
from townhall.errors import ConfigError, NotFoundError
from townhall.domain.events import OutcomeDecided, StanceMeasured
from townhall.domain.personas import Persona, PersonaRegistry, read_toml
from townhall.bench.faithfulness import SpokenTurn, Tally, tally_debate
from townhall.bench.faithfulness import TARGETS as FAITHFULNESS_TARGETS
from townhall.bench.faithfulness import check_targets as faithfulness_met
from townhall.bench.faithfulness import report_line as faithfulness_line
from townhall.bench.judge import Judge
from townhall.debate.quality import DebateScore, ScoredTurn, score_debate
from townhall.domain.spec import TownHallSpec, spec_from_data

TARGETS: dict[str, tuple[str, float]] = {
    "clean_rate": (">=", 0.97),
    "echo_rate": ("<=", 0.03),
    "mean_words": (">=", 12.0),
    "distinct_2": (">=", 0.75),
}
SLOWDOWN_LIMIT = 1.3  # seconds per turn, against the baseline


def motions_path() -> Path:
    from townhall.paths import data_dir

    return data_dir("examples") / "bench" / "quality_motions.toml"


def load_motions(path: Path | None = None) -> list[TownHallSpec]:
    """The benchmark's town halls, each validated as a town-hall spec."""
    path = Path(path) if path is not None else motions_path()
    if not path.is_file():
        raise NotFoundError(f"{path}: no such motions file")
    entries = read_toml(path).get("townhall")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: needs at least one [[townhall]] table")
    return [spec_from_data(entry, f"{path} (town hall {i + 1})") for i, entry in enumerate(entries)]


def bench_spec(spec: TownHallSpec, turns: int) -> TownHallSpec:
    return spec.model_copy(update={"max_turns": turns, "context_strategy": "truncate"})


def check_targets(overall: dict[str, Any], baseline_s: float | None) -> dict[str, bool]:
    met = {}
    for key, (op, bound) in TARGETS.items():
        value = overall[key]
        met[key] = value >= bound if op == ">=" else value <= bound
    if baseline_s:
        met["seconds_per_turn"] = overall["seconds_per_turn"] <= SLOWDOWN_LIMIT * baseline_s
    return met


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-")[:40] or "debate"


def transcript_text(
    spec: TownHallSpec, turns: Sequence[Any], scored: Sequence[ScoredTurn], figures: dict[str, Any]
) -> str:
    """A debate as a person reads it: each turn, marked where the scorer rejected it."""
    verdicts = iter(scored)
    lines = [f"{spec.title or 'Town hall'}", f"Motion: {spec.motion}", f"Seed: {spec.seed}", ""]
    phase = None
    for turn in turns:
        if getattr(turn, "phase", None) and turn.phase != phase:
            phase = turn.phase
            lines.append(f"-- {phase} --")
        mark = ""
        if not getattr(turn, "scripted", False) and turn.kind != "audience":
            verdict = next(verdicts)
            if not verdict.clean:
                mark = f"   [{verdict.reason}]"
            if turn.retries:
                mark += f"   (resampled {turn.retries}x)"
        lines.append(f"{turn.speaker}: {turn.content}{mark}")
    lines.append("")
    lines.extend(f"{k}: {v}" for k, v in figures.items())
    return "\n".join(lines) + "\n"


@dataclass
class _Played:
    """One town hall run to its end: the session's result and what its time went on."""

    result: Any
    seconds: float  # the whole run, minutes included
    debate_s: float  # up to the counted closing ballot (the whole run if none was counted)
    probe_cost: Any  # the scheduler's live-meter probes (None if it does not count them)
    ballot_cost: Any  # the closing ballot's probes
    readings: dict[str, list[float]] = field(default_factory=dict)  # each agent's p(for), in order
    votes: dict[str, str] = field(default_factory=dict)  # each agent's closing ballot


@dataclass
class _ProbeTotals:
    """The stance probes over all the debates, against the debates' time up to each counted ballot."""

    probe_ms: float = 0.0
    ballot_ms: float = 0.0
    debate_s: float = 0.0

    def add(self, played: _Played) -> dict[str, Any]:
        """Count one debate's probes; returns its own figures. The live meter's probes (one after
        each participant's turn) as a share of the debate's time up to the counted ballot (the
        minutes excluded); the closing ballot's probes, each on an agent's whole view, apart."""
        cost = played.probe_cost
        ballot_ms = played.ballot_cost.total_ms if played.ballot_cost is not None else 0.0
        self.probe_ms += cost.total_ms
        self.ballot_ms += ballot_ms
        self.debate_s += played.debate_s
        return {"probes": cost.probes, "probe_ms_mean": round(cost.total_ms / cost.probes, 1),
                "probe/debate_pct": round(100 * cost.total_ms / 1000 / played.debate_s, 2),
                "ballot_s": round(ballot_ms / 1000, 2)}

    def shares(self) -> dict[str, float]:
        if not self.debate_s:
            return {}
        return {"probe/debate_pct": round(100 * self.probe_ms / 1000 / self.debate_s, 2),
                "ballot/debate_pct": round(100 * self.ballot_ms / 1000 / self.debate_s, 2)}


async def _play(engine: Engine, spec: TownHallSpec, personas: Sequence[Persona]) -> _Played:
    """One town hall through `Session`, the path `townhall run` takes; the agents are forgotten after."""
    from townhall.debate.session import Session, SessionPlan

    decided: list[float] = []  # when the closing ballot was counted: the debate's end, before the minutes
    readings: dict[str, list[float]] = {}
    votes: dict[str, str] = {}

    def watch(event: Any) -> None:
        if isinstance(event, OutcomeDecided):
            decided.append(time.perf_counter())
            votes.update({vote.agent: vote.choice for vote in event.votes})
        elif isinstance(event, StanceMeasured):
            readings.setdefault(event.agent, []).append(event.p_for)

    session = Session(engine, SessionPlan(spec, personas), views=[watch])
    started = time.perf_counter()
    result = await session.run()
    seconds = time.perf_counter() - started
    for persona in personas:
        engine.forget(persona.name)
    debate_s = (decided[0] if decided else time.perf_counter()) - started
    return _Played(result, seconds, debate_s, getattr(session.scheduler, "probe_cost", None),
                   getattr(session.scheduler, "ballot_cost", None), readings, votes)


async def run_quality_bench(
    engine: Engine,
    registry: PersonaRegistry,
    specs: Sequence[TownHallSpec],
    *,
    turns: int = 24,
    transcripts: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run each town hall to the end on `engine` and score it; returns per-debate and overall figures."""
    await engine.start()
    if transcripts is not None:
        transcripts.mkdir(parents=True, exist_ok=True)
    debates: list[dict[str, Any]] = []
    spoken_turns: list[list[SpokenTurn]] = []  # what the judge reads afterwards, per debate
    scores: list[DebateScore] = []
    probes = _ProbeTotals()
    for number, base in enumerate(specs, start=1):
        spec = bench_spec(base, turns)
        names = list(dict.fromkeys([*([spec.moderator] if spec.moderator else []), *spec.participants]))
        personas = registry.resolve(names)
        played = await _play(engine, spec, personas)
        if played.result.reason == "error":
            raise ConfigError(f"town hall {number} ({spec.title}) stopped on an error: {played.result.error}")
        spoken = [t for t in played.result.turns if t.kind != "audience"]
        rows = [(t.speaker, t.content, not t.scripted) for t in spoken]
        score, scored = score_debate(rows, [p.name for p in personas], played.seconds)
        scores.append(score)
        figures = {"title": spec.title, "motion": spec.motion, "seed": spec.seed, "end": played.result.reason,
                   **score.figures()}
        if played.probe_cost is not None and played.probe_cost.probes:
            figures |= probes.add(played)
        figures["_readings"], figures["_votes"] = played.readings, played.votes
        debates.append(figures)
        spoken_turns.append(model_turns(spec, spoken, personas))
        progress(_line(f"{number}. {spec.title}", score.figures()))
        if transcripts is not None:
            path = transcripts / f"{number:02d}-{_slug(spec.title or spec.motion)}.txt"
            path.write_text(transcript_text(spec, spoken, scored, score.figures()), encoding="utf-8")
    overall = DebateScore.merge(scores).figures() | probes.shares()
    return {"debates": debates, "overall": overall, "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
            "_spoken": spoken_turns, "_specs": [bench_spec(s, turns) for s in specs]}


def model_turns(spec: TownHallSpec, spoken: Sequence[Any], personas: Sequence[Persona]) -> list[SpokenTurn]:
    """The model-written turns of the participants (not the chair), each with its speaker's given side."""
    from townhall.debate.prompts import is_chair, resolve_stance

    by_name = {p.name: p for p in personas}
    out = []
    for turn in spoken:
        persona = by_name.get(turn.speaker)
        if persona is None or turn.scripted or is_chair(spec, persona) or not turn.content.strip():
            continue
        stance = resolve_stance(spec, persona)
        side = stance[0] if stance is not None and stance[0] in ("for", "against") else None
        out.append(SpokenTurn(turn.speaker, side, turn.content))
    return out


async def judge_debates(
    judge: Judge, summary: dict[str, Any], progress: Callable[[str], None] = lambda line: None
) -> None:
    """Judge every debate's model-written turns (after the debating engine is closed: the two
    models never run at once) and add the faithfulness figures to `summary`."""
    overall = Tally()
    started = time.perf_counter()
    judged = 0
    for number, (debate, spec, turns) in enumerate(zip(summary["debates"], summary["_specs"], summary["_spoken"],
                                                       strict=True), start=1):
        verdicts = await judge.judge_all([(spec.motion, t.text) for t in turns])
        judged += len(turns)
        tally = tally_debate(turns, verdicts, debate["_readings"], debate["_votes"])
        overall.add(tally)
        debate.update(tally.figures())
        debate["judged"] = [{"speaker": t.speaker, "side": t.side, "text": t.text, "judged_side": v.side,
                             "reason": v.reason, "relevant": v.relevant} for t, v in zip(turns, verdicts, strict=True)]
        progress(faithfulness_line(f"{number}. {spec.title}", debate))
    summary["overall"].update(overall.figures())
    summary["judge_s_per_turn"] = round((time.perf_counter() - started) / max(judged, 1), 2)


def judged_text(debate: dict[str, Any]) -> str:
    """One debate's judged turns as a person checks them: given side, judged side, reason, topic."""
    lines = [f"{debate['title']}: {debate['motion']}", ""]
    for row in debate.get("judged", []):
        given = row["side"] or "-"
        mark = "" if row["side"] in (None, row["judged_side"]) else "   <-- not its side"
        lines.append(f"[{given} -> {row['judged_side']}, reason {'yes' if row['reason'] else 'no'}, "
                     f"topic {'yes' if row['relevant'] else 'no'}] {row['speaker']}: {row['text']}{mark}")
    return "\n".join(lines) + "\n"


def strip_private(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without the material kept for the judge (keys starting with "_")."""
    out = {k: v for k, v in summary.items() if not k.startswith("_")}
    out["debates"] = [{k: v for k, v in d.items() if not k.startswith("_")} for d in summary["debates"]]
    return out


def _line(label: str, f: dict[str, Any]) -> str:
    return (
        f"{label[:28]:<28} turns {f['turns']:>3}  clean {f['clean_rate']:>6.1%}  echo {f['echo_rate']:>5.1%}  "
        f"words {f['mean_words']:>5.1f}  distinct-2 {f['distinct_2']:.3f}  answer {f['answer_rate']:>6.1%}  "
        f"s/turn {f['seconds_per_turn']:.2f}"
    )


def report_lines(summary: dict[str, Any], baseline_s: float | None = None) -> list[str]:
    lines = [_line(f"{i}. {d['title']}", d) for i, d in enumerate(summary["debates"], start=1)]
    overall = summary["overall"]
    lines.append(_line("overall", overall))
    if "probe/debate_pct" in overall:
        lines.append(f"stance probes after each turn: {overall['probe/debate_pct']:.2f}% of the debates' time "
                     f"(target <= 5%); the closing ballots' probes: {overall['ballot/debate_pct']:.2f}%")
    if overall["failures"]:
        lines.append("rejected turns: " + ", ".join(f"{k} {v}" for k, v in overall["failures"].items()))
    met = check_targets(overall, baseline_s)
    targets = [f"{k} {TARGETS[k][0]} {TARGETS[k][1]}: {'met' if met[k] else 'MISSED'}" for k in TARGETS]
    if baseline_s:
        targets.append(
            f"seconds_per_turn <= {SLOWDOWN_LIMIT} x {baseline_s}: {'met' if met['seconds_per_turn'] else 'MISSED'}"
        )
    else:
        targets.append(f"seconds_per_turn <= {SLOWDOWN_LIMIT} x baseline (give --baseline-s to check)")
    lines.append("targets: " + "; ".join(targets))
    if "side_match" in overall:
        lines.append("")
        if "judge" in summary:
            j = summary["judge"]
            lines.append(f"judge: {j['model']}, agreement with {j['statements']} hand-labelled statements "
                         f"{j['agreement']:.1%} (side {j['side']:.0%}, reason {j['reason']:.0%}, "
                         f"on topic {j['relevant']:.0%}; a measure from {j['min_agreement']:.0%})")
        lines.extend(faithfulness_line(f"{i}. {d['title']}", d) for i, d in enumerate(summary["debates"], start=1))
        lines.append(faithfulness_line("overall", overall))
        met = faithfulness_met(overall)
        lines.append("faithfulness targets: " + "; ".join(
            f"{k} {op} {bound}: {'met' if met[k] else 'MISSED'}" for k, (op, bound) in FAITHFULNESS_TARGETS.items()))
    return lines
