"""Anti-echo decoding without the model: the n-gram index, its per-agent cache, the logits
step, the scripted engine's word-level version, and what the HTTP backend sends."""

from __future__ import annotations

import numpy as np
import pytest
from servers import FaultHandler, FaultServer, stream_words

from townhall.engine.base import GenerationRequest, SamplingOverrides, SamplingParams
from townhall.engine.decoding import BanIndexCache, NgramIndex, TokenClasses, TurnConstraints, ngram_overlap
from townhall.engine.openai import OpenAIEngine
from townhall.engine.scripted import ScriptedEngine


def test_index_bans_only_the_token_that_completes_a_seen_ngram() -> None:
    index = NgramIndex(3)
    index.add_sequence([1, 2, 3, 4])
    assert index.banned_after([9, 1, 2]) == {3}
    assert index.banned_after([2, 3]) == {4}
    assert index.banned_after([1, 3]) == set()
    assert index.banned_after([2]) == set()  # too short to complete a 3-gram
    index.add_last([7, 1, 2, 5])
    assert index.banned_after([1, 2]) == {3, 5}


def test_cache_tokenizes_only_texts_it_has_not_seen() -> None:
    calls: list[str] = []

    def tokenize(text: str) -> list[int]:
        calls.append(text)
        return [ord(c) for c in text]

    cache = BanIndexCache(tokenize)
    cache.index_for("Ada", ["ab c", "def"], 2)
    assert calls == [" ab c", " def"]  # one leading space, as after a `Name:` tag
    index = cache.index_for("Ada", ["ab c", "def", "xyz"], 2)
    assert calls[2:] == [" xyz"] and cache.texts_tokenized == 3
    assert index.banned_after([ord("x")]) == {ord("y")}
    cache.index_for("Bram", ["ab c", "def", "xyz"], 2)  # another agent: index rebuilt, tokens reused
    assert cache.texts_tokenized == 3
    rebuilt = cache.index_for("Ada", ["def"], 2)  # not a continuation: rebuilt from scratch
    assert rebuilt.banned_after([ord("x")]) == set() and rebuilt.banned_after([ord("d")]) == {ord("e")}


def test_ngrams_never_span_two_texts() -> None:
    cache = BanIndexCache(lambda text: [ord(c) for c in text])
    index = cache.index_for(None, ["ab", "cd"], 3)
    assert index.banned_after([ord("a"), ord("b")]) == set()  # "a b c" crosses the boundary
    assert index.banned_after([ord(" "), ord("c")]) == {ord("d")}


def _classes() -> TokenClasses:
    pieces = {0: b"", 1: b"\n", 2: b".\n", 7: b"ery"}  # 0 is the end token, 7 a word's second piece
    return TokenClasses.scan(9, lambda t: pieces.get(t, b" w"), lambda t: t == 0)


def test_token_classes_hold_newlines_and_end_tokens_and_ban_only_word_starts() -> None:
    classes = _classes()
    assert classes.turn_enders == {0, 1, 2}
    assert [classes.bannable(t) for t in range(9)] == [False, False, False, True, True, True, True, False, True]


def test_constraints_ban_word_starts_but_never_a_turn_ender_or_a_word_piece() -> None:
    banned = NgramIndex(2)
    banned.add_sequence([5, 6, 5, 2, 5, 7, 5, 8])  # after 5: 6, 2 (".\n"), 7 (a piece) and 8
    step = TurnConstraints(_classes(), banned=banned, min_tokens=0, history=[3, 5])
    logits = np.zeros(9, dtype=np.float32)
    step.apply(logits)
    assert list(np.flatnonzero(np.isneginf(logits))) == [6, 8]
    step.observe(4)
    step.observe(5)
    logits = np.zeros(9, dtype=np.float32)
    step.apply(logits)
    assert list(np.flatnonzero(np.isneginf(logits))) == [4, 6, 8]  # the turn's own 2-gram (5, 4) too


def test_min_tokens_masks_turn_enders_until_reached() -> None:
    step = TurnConstraints(_classes(), banned=None, min_tokens=2, history=[])
    for n in range(3):
        logits = np.zeros(9, dtype=np.float32)
        step.apply(logits)
        assert np.isneginf(logits[[0, 1, 2]]).all() == (n < 2)
        assert not np.isneginf(logits[3:]).any()
        step.observe(5)


def test_overlap_counts_shared_ngrams() -> None:
    assert ngram_overlap([1, 2, 3, 4], [[0, 2, 3, 4]], 3) == 1
    assert ngram_overlap([1, 2, 3, 4], [[4, 3, 2, 1]], 2) == 0


def test_new_fields_merge_like_the_others() -> None:
    base = SamplingParams()
    assert (base.no_repeat_ngram_size, base.min_tokens, base.dry_multiplier) == (0, 0, 0.0)
    merged = base.merged(SamplingOverrides(no_repeat_ngram_size=3, dry_multiplier=0.8), {"min_tokens": 6})
    assert (merged.no_repeat_ngram_size, merged.min_tokens, merged.dry_multiplier) == (3, 6, 0.8)
    with pytest.raises(ValueError):
        SamplingOverrides(dry_base=0.5)


async def test_scripted_engine_records_the_fields_and_bans_words_only_when_asked() -> None:
    script = ["The bridge will bring customers.\nBut it costs."]
    sampling = SamplingParams(no_repeat_ngram_size=2, min_tokens=6)
    request = GenerationRequest("Ada", "prompt", sampling, banned_texts=("the BRIDGE is old",))
    plain = ScriptedEngine(script)
    assert await plain.generate(request).result() == script[0]  # by default the script is the text
    assert plain.requests[0].banned_texts == ("the BRIDGE is old",) and not plain.info.decoding.ngram_ban
    banning = ScriptedEngine(script, word_bans=True)
    assert await banning.generate(request).result() == "The will bring customers.\nBut it costs."
    assert banning.info.decoding.ngram_ban and not banning.info.decoding.min_tokens
    repeats = ScriptedEngine(["a a a a"], word_bans=True)
    assert await repeats.generate(GenerationRequest("Ada", "p", SamplingParams(no_repeat_ngram_size=1))).result() == "a"


async def test_http_backend_sends_dry_and_min_tokens_and_says_it_cannot_ban() -> None:
    def llama(handler: FaultHandler, body: dict) -> None:
        stream_words(handler, ["Yes", " indeed"])

    props = {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 2}
    with FaultServer(llama, props=props, models=["gemma"]) as server:
        engine = OpenAIEngine(server.root)
        await engine.start()
        try:
            assert engine.info.decoding.dry and not engine.info.decoding.ngram_ban
            sampling = SamplingParams(dry_multiplier=0.8, dry_allowed_length=3, min_tokens=5, no_repeat_ngram_size=3)
            await engine.generate(GenerationRequest("Ada", "Ada:", sampling, banned_texts=("said",))).result()
            await engine.generate(GenerationRequest("Ada", "Ada:", SamplingParams())).result()
        finally:
            await engine.aclose()
    with_dry, plain = server.requests[-2], server.requests[-1]
    assert with_dry["dry_multiplier"] == 0.8 and with_dry["dry_allowed_length"] == 3
    assert with_dry["dry_base"] == 1.75 and with_dry["dry_penalty_last_n"] == -1 and with_dry["min_tokens"] == 5
    assert not any(key.startswith("no_repeat") or "banned" in key for key in with_dry)
    assert not any(key.startswith("dry_") or key == "min_tokens" for key in plain)


async def test_generic_server_gets_no_dry_fields() -> None:
    with FaultServer(lambda handler, body: stream_words(handler, ["ok"]), models=["m"]) as server:
        engine = OpenAIEngine(server.root)
        await engine.start()
        try:
            assert not engine.info.decoding.dry
            await engine.generate(GenerationRequest(None, "x", SamplingParams(dry_multiplier=1.0))).result()
        finally:
            await engine.aclose()
    assert not any(key.startswith("dry_") for key in server.requests[-1])


def test_allowed_ngrams_are_never_banned() -> None:
    """'for the motion' said once must stay sayable: the debate's own words are allowed."""
    from townhall.engine.decoding import BanIndexCache

    vocab: dict[str, int] = {}

    def tokenize(text: str) -> list[int]:
        return [vocab.setdefault(word, len(vocab)) for word in text.split()]

    cache = BanIndexCache(tokenize)
    said = ("I am for the motion because parks matter",)
    plain = cache.index_for("Walt", said, 3)
    history = tokenize("I speak for the")
    assert vocab["motion"] in plain.banned_after(history)
    allowing = cache.index_for("Priya", said, 3, allowed=("for the motion",))
    assert vocab["motion"] not in allowing.banned_after(history)
    # everything else said stays banned
    assert vocab["matter"] in allowing.banned_after(tokenize("because parks"))
