"""The figures a benchmark prints: ratios between ways, and one table for every backend.

Local and server results share the keys `name, total_s, prefill_tokens, generated_tokens,
turn_s, restore_ms_max` (None where it cannot be timed), so one table shows both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Way = Mapping[str, Any]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize_local(
    ways: list[dict[str, Any]],
    *,
    turns: int,
    prefill_per_turn: Mapping[str, list[int]],
    new_per_turn: Mapping[str, list[int]],
) -> dict[str, Any]:
    """What per-agent KV states save against each baseline, and whether turns stay flat."""
    by_name = {way["name"]: way for way in ways}
    town = by_name["townhall"]
    summary: dict[str, Any] = {"ways": ways}
    for other in ("reprefill", "save_state"):
        if other in by_name and town["total_s"] > 0:
            summary[f"{other}/townhall"] = round(by_name[other]["total_s"] / town["total_s"], 2)
    if turns >= 16:
        early, late = _mean(town["turn_s"][8:16]), _mean(town["turn_s"][-8:])
        summary["townhall_turns_9_16_mean_s"] = round(early, 4)
        summary["townhall_last_8_mean_s"] = round(late, 4)
        summary["townhall_late_over_early"] = round(late / early, 3) if early else None
    # Each agent's first turn evaluates its whole header: "new" is everything then too.
    excess = [p - n for p, n in zip(prefill_per_turn["townhall"], new_per_turn["townhall"], strict=True)]
    summary["townhall_prefill_minus_new_max"] = max(excess) if excess else 0
    if town.get("probes") and town["total_s"] > 0:
        summary["probe/debate_pct"] = round(100 * town["probe_s"] / town["total_s"], 2)
        summary["probe_ms_mean"] = round(1000 * town["probe_s"] / town["probes"], 2)
        summary["probe_tokens_mean"] = round(town["probe_tokens"] / town["probes"], 1)
    return summary


def summarize_branches(
    regenerated: list[dict[str, Any]], after_edit: list[dict[str, Any]], *, edit_at: int
) -> dict[str, Any]:
    """What a regenerated last turn and an edit in the middle cost against a normal turn.

    The issue's target: a regenerated turn evaluates no more than its cue and a handful of
    tokens, however long the debate (its prompt-end checkpoint covers the prompt), and after
    an edit each agent evaluates only from the edited line on.
    """
    summary: dict[str, Any] = {"regenerate": regenerated, "edit": {"at": edit_at, "next_round": after_edit}}
    if regenerated:
        prefills = [r["prefill_tokens"] for r in regenerated]
        summary["regenerate_prefill_max"] = max(prefills)
        summary["regenerate_prefill_spread"] = max(prefills) - min(prefills)
        ratios = [r["ms"] / r["normal_ms"] for r in regenerated if r["normal_ms"]]
        summary["regenerate/normal_ms_mean"] = round(_mean(ratios), 3)
    if after_edit:
        prompt = sum(a["prompt_tokens"] for a in after_edit)
        prefill = sum(a["prefill_tokens"] for a in after_edit)
        summary["edit_next_round_prefill/prompt_pct"] = round(100 * prefill / prompt, 1)
        summary["edit_next_round_prefill_minus_from_edit_max"] = max(a["prefill_tokens"] - a["from_edit_tokens"]
                                                                     for a in after_edit)
    return summary


def branch_lines(summary: Mapping[str, Any]) -> list[str]:
    """The regenerate and edit figures as fixed-width tables, then the summary figures."""
    lines = [f"{'regenerate after':<17} {'prompt':>7} {'normal prefill':>14} {'normal ms':>9} {'decode ms':>9} "
             f"{'regen prefill':>13} {'evaluated':>9} {'regen ms':>8}"]
    for r in summary["regenerate"]:
        where = f"turn {r['turns']}" + (" +ballot" if r["after_ballot"] else "")
        lines.append(f"{where:<17} {r['prompt_tokens']:>7} {r['normal_prefill']:>14} {r['normal_ms']:>9.1f} "
                     f"{r['normal_decode_ms']:>9.1f} {r['prefill_tokens']:>13} {r['evaluated_tokens']:>9} "
                     f"{r['ms']:>8.1f}")
    edit = summary["edit"]
    lines.append(f"{'after edit of #' + str(edit['at']):<17} {'prompt':>7} {'from edit':>14} {'prefill':>9} {'ms':>9}")
    for a in edit["next_round"]:
        lines.append(f"{a['speaker']:<17} {a['prompt_tokens']:>7} {a['from_edit_tokens']:>14} {a['prefill_tokens']:>9} "
                     f"{a['ms']:>9.1f}")
    lines += [f"{key}: {value}" for key, value in summary.items() if key not in ("regenerate", "edit", "config")]
    return lines


def summarize_server(ways: list[dict[str, Any]]) -> dict[str, Any]:
    """Resending the history against appending to a pinned slot, through one server."""
    summary: dict[str, Any] = {"ways": ways}
    if len(ways) == 2 and ways[1]["total_s"]:
        summary["resend-history/append-only"] = round(ways[0]["total_s"] / ways[1]["total_s"], 2)
    return summary


def table_lines(summary: Mapping[str, Any]) -> list[str]:
    """The ways as a fixed-width table, then every other figure as `key: value`."""
    lines = [f"{'way':<14} {'total s':>9} {'prefill':>9} {'generated':>9} {'mean turn s':>11} {'restore ms max':>14}"]
    for way in summary["ways"]:
        restore = way["restore_ms_max"]
        restore_text = "-" if restore is None else f"{restore:.1f}"
        lines.append(
            f"{way['name']:<14} {way['total_s']:>9.2f} {way['prefill_tokens']:>9} {way['generated_tokens']:>9} "
            f"{_mean(way['turn_s']):>11.3f} {restore_text:>14}"
        )
    lines += [f"{key}: {value}" for key, value in summary.items() if key not in ("ways", "config")]
    return lines
