"""Pure logic of the engine layer: stop strings, sampling merge, GGUF checks."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from townhall.engine.base import SamplingOverrides, SamplingParams
from townhall.engine.model_file import validate_model_file
from townhall.engine.stops import StopMatcher
from townhall.errors import ModelFileError


def feed_all(matcher: StopMatcher, pieces: list[str]) -> str:
    return "".join(matcher.feed(p) for p in pieces) + matcher.flush()


def test_stop_split_across_pieces_is_cut() -> None:
    m = StopMatcher(["\nBob:"])
    assert feed_all(m, ["Hello", " there\n", "Bo", "b: hi"]) == "Hello there"
    assert m.stopped and m.matched == "\nBob:"


def test_partial_stop_prefix_is_released_when_it_is_not_a_stop() -> None:
    m = StopMatcher(["\nBob:"])
    out = [m.feed("one\n"), m.feed("Bo"), m.feed("ring.")]
    assert "".join(out) + m.flush() == "one\nBoring."
    assert out[0] == "one"  # the newline waits until it is known not to start a stop
    assert not m.stopped


def test_earliest_stop_wins() -> None:
    m = StopMatcher(["<end_of_turn>", "\nAl:"])
    assert feed_all(m, ["a\nAl: x <end_of_turn>"]) == "a"
    assert m.matched == "\nAl:"


def test_sampling_overrides_merge_in_order() -> None:
    base = SamplingParams()
    merged = base.merged(SamplingOverrides(temperature=0.2), {"temperature": None, "top_k": 5}, None)
    assert merged.temperature == 0.2 and merged.top_k == 5 and merged.top_p == base.top_p
    assert base.merged(SamplingOverrides(temperature=0.3), SamplingOverrides(temperature=0.9)).temperature == 0.9


def test_sampling_override_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        SamplingOverrides(top_p=1.5)


def _tiny_gguf(path: Path, *, magic: bytes = b"GGUF", kv_truncate: bool = False) -> Path:
    body = magic + struct.pack("<IQQ", 3, 0, 1)
    key = b"general.architecture"
    kv = struct.pack("<Q", len(key)) + key + struct.pack("<I", 8) + struct.pack("<Q", 6) + b"gemma3"
    path.write_bytes(body + (kv[:-3] if kv_truncate else kv))
    return path


def test_valid_minimal_gguf_header_is_read(tmp_path: Path) -> None:
    header = validate_model_file(_tiny_gguf(tmp_path / "ok.gguf"))
    assert header.architecture == "gemma3"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "not found"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b"x" * 100), p)[1], "bad magic"),
        (lambda p: (p.write_bytes(b"GG"), p)[1], "only 2 bytes"),
        (lambda p: _tiny_gguf(p, kv_truncate=True), "truncated"),
    ],
)
def test_bad_model_files_get_one_line_naming_the_path(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path / "model.gguf")
    with pytest.raises(ModelFileError) as info:
        validate_model_file(path)
    text = str(info.value)
    assert str(tmp_path / "model.gguf") in text and message in text and "\n" not in text


@pytest.mark.model
def test_truncated_tensor_data_is_caught(tmp_path: Path, model_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with model_path.open("rb") as src:
        cut.write_bytes(src.read(20_000_000))
    with pytest.raises(ModelFileError, match="truncated"):
        validate_model_file(cut)
