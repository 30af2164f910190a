"""What one GGUF on disk is, read from its header alone: the facts `townhall models` shows.

No weights are loaded and no llama.cpp context is made: listing dozens of files must take
moments, and a file that would crash llama.cpp must never reach it. Whether the build knows
the file's architecture is told from the library's own string table, read once.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from townhall.engine.model_file import GGUFHeader, parse_gguf_header, read_gguf_header
from townhall.errors import ModelFileError

PromptFormat = Literal["chat", "transcript"]


@dataclass(frozen=True)
class ModelFacts:
    """One file's facts; `problem` is why it cannot be used (None: it can)."""

    path: Path
    size_bytes: int
    architecture: str | None = None
    parameters: str | None = None
    quantisation: str | None = None
    context_length: int | None = None
    chat_template: bool = False
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def prompt_format(self) -> PromptFormat:
        return "chat" if self.chat_template else "transcript"

    def summary(self) -> str:
        """One line of facts (the TUI's list, the plain `townhall models`)."""
        if self.problem is not None:
            return f"unusable: {self.problem}"
        parts = [self.architecture or "?", self.parameters or "?", self.quantisation or "?", _size(self.size_bytes)]
        if self.context_length:
            parts.append(f"ctx {self.context_length}")
        parts.append(self.prompt_format)
        return " · ".join(parts)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def file_facts(path: Path, *, size: int | None = None, header_from: Path | None = None) -> ModelFacts:
    """The facts of the GGUF at `path`; `header_from` reads the header from another file (the
    embedded model's first part, before it is assembled) whose whole is `size` bytes."""
    try:
        if header_from is None:
            size = path.stat().st_size
            header = read_gguf_header(path)
        else:
            assert size is not None
            with header_from.open("rb") as fh:
                header = parse_gguf_header(fh, size, path)
    except OSError as exc:
        return ModelFacts(path, size or 0, problem=f"cannot be read ({exc.strerror or exc})")
    except ModelFileError as exc:
        return ModelFacts(path, size or 0, problem=_reason(str(exc), path))
    return facts_of(path, size, header)


def _reason(message: str, path: Path) -> str:
    """The header reader's one line without the path it starts with (the listing shows the path)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def facts_of(path: Path, size: int, header: GGUFHeader) -> ModelFacts:
    arch = header.architecture
    problem = None
    if not arch:
        problem = "no general.architecture in its header"
    elif not build_knows(arch):
        problem = f"this llama.cpp build does not know the architecture {arch!r} (a newer llama-cpp-python may)"
    return ModelFacts(
        path=path,
        size_bytes=size,
        architecture=arch,
        parameters=header.size_label,
        quantisation=header.quantisation,
        context_length=header.context_length,
        chat_template=header.chat_template is not None,
        problem=problem,
    )


def build_knows(architecture: str) -> bool:
    """False when the llama.cpp library cannot know `architecture`: its name, which the loader
    compares as a C string, is nowhere in the library. True when it is, or when no library is found."""
    names = _library_strings()
    return names is None or architecture.encode() + b"\0" in names


@functools.cache
def _library_strings() -> bytes | None:
    """The bytes of llama-cpp-python's libllama, found without importing (and so loading) it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    for name in ("libllama.so", "libllama.dylib", "llama.dll"):
        if (lib / name).is_file():
            try:
                return (lib / name).read_bytes()
            except OSError:
                return None
    return None
