"""`--model` as people write it: a path, or a name as Ollama, Hugging Face or LM Studio spell it.

`ollama:NAME[:TAG]` (tag `latest` by default), `hf:ORG/REPO[/FILE]`, `lmstudio:PUBLISHER/REPO[/FILE]`,
the names `townhall models` lists, and a bare name that only one model found answers to.
Nothing is fetched: a name that is not on this machine gets one line saying where Townhall
looked and the command of the user's own tool that would fetch it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from townhall.engine.discovery import Candidate, Discovery, discover
from townhall.engine.model_file import embedded_model_path
from townhall.errors import ModelFileError

SCHEMES = ("ollama", "hf", "lmstudio")


def resolve_model_path(
    model: str | os.PathLike[str] | None = None, *, finder: Callable[[], Discovery] = discover
) -> Path:
    """`--model`, else `TOWNHALL_MODEL`, else the embedded model; a name becomes its file's path.

    A file that exists is a path whatever it looks like; so is anything that reads as one
    (ends in `.gguf`, starts with `/`, `~` or `.`), and then a missing file is reported as before."""
    chosen = model or os.environ.get("TOWNHALL_MODEL")
    if not chosen:
        return embedded_model_path()
    text = os.fspath(chosen)
    if _looks_like_path(text):
        return Path(text).expanduser()
    candidate = find_candidate(text, finder())
    path = embedded_model_path() if candidate.source == "embedded" else candidate.path
    facts = candidate.facts() if candidate.source != "embedded" else None
    if facts is not None and facts.problem is not None:
        raise ModelFileError(f"{candidate.name} ({candidate.path}) cannot be used: {facts.problem}")
    return path


def _looks_like_path(text: str) -> bool:
    scheme = text.split(":", 1)[0]
    if ":" in text and scheme in SCHEMES:
        return False
    path = Path(text).expanduser()
    return (path.exists() or text.lower().endswith(".gguf") or text.startswith(("/", "~", "."))
            or os.sep != "/" and os.sep in text)


def find_candidate(name: str, found: Discovery) -> Candidate:
    """The one model `name` names among those found; ModelFileError (one line) when none or several do."""
    scheme, _, rest = name.partition(":")
    if scheme in SCHEMES:
        return _by_scheme(name, scheme, rest, found)
    matches = _matching(name, found.candidates)
    if matches:
        return _one(name, matches)
    raise ModelFileError(
        f"no model named {name!r} on this machine (looked in {found.looked()}); `townhall models` lists the "
        f"names found, `ollama pull {name}` would fetch it with Ollama, or pass a GGUF path"
    )


def _by_scheme(name: str, scheme: str, rest: str, found: Discovery) -> Candidate:
    ours = [c for c in found.candidates if c.source == scheme]
    wanted = name
    if scheme == "ollama" and ":" not in rest:
        wanted = f"{name}:latest"
    exact = [c for c in ours if c.name.casefold() == wanted.casefold()]
    matches = exact or [c for c in ours if wanted.casefold() in (a.casefold() for a in c.aliases)]
    if matches:
        return _one(name, matches)
    where = ", ".join(str(p.path) for p in found.places if p.source == scheme and p.path is not None) or "nowhere"
    raise ModelFileError(f"{wanted} is not on this machine (looked in {where}); {_fetch_hint(scheme, rest)}")


def _fetch_hint(scheme: str, rest: str) -> str:
    """How the user's own tool would fetch it: Townhall downloads nothing."""
    if scheme == "ollama":
        return f"`ollama pull {rest}` fetches it"
    repo = "/".join(rest.split("/")[:2])
    if scheme == "hf":
        return f"`hf download {repo} --include '*.gguf'` (huggingface_hub) fetches it"
    return f"`lms get {repo}` (LM Studio) fetches it"


def _matching(name: str, candidates: Sequence[Candidate]) -> list[Candidate]:
    key = name.casefold()
    exact = [c for c in candidates if c.name.casefold() == key]
    return exact or [c for c in candidates if key in (a.casefold() for a in c.aliases)]


def _one(name: str, matches: Sequence[Candidate]) -> Candidate:
    """The only match, else the only usable one (a repo with one good GGUF beside a broken
    download); several that work are for the user to pick."""
    if len(matches) == 1:
        return matches[0]
    usable = [c for c in matches if c.facts().usable]
    if len(usable) == 1:
        return usable[0]
    names = ", ".join(c.name for c in matches)
    raise ModelFileError(f"{name!r} names {len(matches)} models ({names}); pass one of those names")
