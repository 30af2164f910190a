"""generate --parallel through a real HTTP server on loopback: the requests really overlap.

The server is our own threaded one (`tests/servers.py`) posing as a two-slot llama-server.
Its first two completion requests wait for each other at a barrier before answering: if
Townhall sent them one after another, the first would wait alone and the barrier would
break (after its timeout the server answers 500 and the run fails). No clock decides it.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from servers import FaultHandler, FaultServer, stream_words
from townhall.engine.openai import OpenAIEngine
from townhall.generate.chats import shape_for
from townhall.generate.config import GenerateConfig
from townhall.generate.output import OutputFile
from townhall.generate.runner import Runner
from townhall.domain.personas import PersonaRegistry
from townhall.store import Store

pytestmark = pytest.mark.server

WORDS = ["bridge", "leaf", "pocket"]
PROPS = {"default_generation_settings": {"n_ctx": 4096}, "total_slots": 2, "chat_template": "", "build_info": "b1"}


class Overlap:
    """The server side: counts streams open at once; the first two meet at a barrier."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.most_open = 0
        self.barrier = threading.Barrier(2, timeout=20)
        self.completions = 0
        self.counter = itertools.count(1)

    def __call__(self, handler: FaultHandler, body: dict[str, Any]) -> None:
        with self.lock:
            self.completions += 1
            first_two = self.completions <= 2
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            n = next(self.counter)
        try:
            if first_two:
                try:
                    self.barrier.wait()
                except threading.BrokenBarrierError:
                    handler.send_json(500, {"error": {"message": "the requests did not overlap"}})
                    return
            word = next(w for w in WORDS if f'"{w}"' in body.get("prompt", ""))
            stream_words(handler, [f"Remark {n}", f" on the {word}:", f" {n} reasons."])
        finally:
            with self.lock:
                self.open -= 1


async def test_parallel_generate_keeps_two_streams_open_at_once(tmp_path: Path) -> None:
    config = GenerateConfig.model_validate(dict(
        name="t", motion='Explain "{word}".', participants=["Student", "Teacher"], turns=2, min_turns=1,
        words=WORDS, seed=5, n_ctx=2048, assistant="Teacher", parallel=2,
    ))
    overlap = Overlap()
    with FaultServer(overlap, props=PROPS, slots=[{"id": 0, "n_ctx": 2048}, {"id": 1, "n_ctx": 2048}]) as server:
        engine = OpenAIEngine(server.root, streams=2, max_tries=1)
        personas = PersonaRegistry.default().resolve(config.persona_names())
        out = tmp_path / "out.jsonl"
        shape = shape_for("jsonl", per_speaker=False, assistant="Teacher")
        output = OutputFile(out, "jsonl", config.fingerprint(), shape)
        with Store.open(tmp_path / "th.db") as store:
            try:
                runner = Runner(config, WORDS, engine, store, personas, output, parallel=2)
                summary = await runner.run()
            finally:
                await engine.aclose()
        assert engine.max_streams == 2 and not engine.pins_slots  # two slots, N streams: unpinned
    assert summary.written == 3 and summary.aborted is None, summary
    assert overlap.most_open == 2 and overlap.barrier.broken is False
    completions = [b for b in server.requests if b["_path"] == "/v1/completions"]
    assert all("id_slot" not in b for b in completions)  # llama-server picks the idle slot with the best prefix
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [next(w for w in WORDS if f'"{w}"' in line["messages"][0]["content"]) for line in lines] == WORDS
