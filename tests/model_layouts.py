"""Small real GGUF files, and the folders Ollama, Hugging Face and LM Studio keep them in.

The files are whole GGUFs (header, metadata, one F32 tensor and its data) that the header
reader checks end to end; the layouts are built as each tool writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

_U32, _STR = 4, 8
TENSOR_VALUES = 32  # one F32 tensor of 32 elements: 128 bytes of data


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _kv(key: str, value: str | int) -> bytes:
    if isinstance(value, str):
        return _string(key) + struct.pack("<I", _STR) + _string(value)
    return _string(key) + struct.pack("<I", _U32) + struct.pack("<I", value)


def gguf_bytes(*, arch: str = "llama", name: str = "Tiny", chat: bool = False, size_label: str | None = "1M",
               file_type: int = 15, context: int = 2048) -> bytes:
    """A whole GGUF v3: what `townhall models` reads, with tensor data to the last byte."""
    metadata = {"general.architecture": arch, "general.name": name, "general.file_type": file_type,
                f"{arch}.context_length": context}
    if size_label:
        metadata["general.size_label"] = size_label
    if chat:
        metadata["tokenizer.chat_template"] = "{% for m in messages %}{{ m.content }}{% endfor %}"
    body = b"GGUF" + struct.pack("<IQQ", 3, 1, len(metadata))
    body += b"".join(_kv(k, v) for k, v in metadata.items())
    body += _string("weights") + struct.pack("<I", 1) + struct.pack("<Q", TENSOR_VALUES)
    body += struct.pack("<IQ", 0, 0)  # F32, offset 0
    body += b"\0" * ((-len(body)) % 32)
    return body + struct.pack(f"<{TENSOR_VALUES}f", *range(TENSOR_VALUES))


def truncated_gguf() -> bytes:
    """A GGUF whose tensor data was cut short (a download that stopped)."""
    return gguf_bytes()[:-40]


NOT_GGUF = b"<html>404 Not Found</html>\n" * 4


def ollama_store(root: Path, models: dict[str, bytes]) -> Path:
    """`OLLAMA_MODELS`: a manifest per `NAME:TAG` naming a blob by its sha256, as `ollama pull` leaves it."""
    for name_tag, blob in models.items():
        name, _, tag = name_tag.partition(":")
        digest = hashlib.sha256(blob).hexdigest()
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "blobs" / f"sha256-{digest}").write_bytes(blob)
        link_ollama_manifest(root, name, tag or "latest", f"sha256:{digest}", len(blob))
    return root


def link_ollama_manifest(root: Path, name: str, tag: str, digest: str, size: int) -> Path:
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "0" * 64,
                   "size": 2},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": size},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64, "size": 10},
        ],
    }))
    return manifest


def hf_cache(hub: Path, repo: str, files: dict[str, bytes], revision: str = "a" * 40) -> Path:
    """`HF_HUB_CACHE`: blobs named by hash, snapshot files that are relative links to them."""
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    snapshot = repo_dir / "snapshots" / revision
    for rel, data in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return hub


def lmstudio_folder(root: Path, repo: str, files: dict[str, bytes]) -> Path:
    """LM Studio's models folder: `PUBLISHER/REPO/FILE.gguf`."""
    folder = root / repo
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (folder / rel).write_bytes(data)
    return root


def isolated_env(tmp: Path, **overrides: str) -> dict[str, str]:
    """Every model place pointed into `tmp` (empty unless built), so the machine's own models stay out."""
    env = {
        "OLLAMA_MODELS": str(tmp / "ollama"),
        "HF_HUB_CACHE": str(tmp / "hf"),
        "LMSTUDIO_MODELS_DIR": str(tmp / "lmstudio"),
        "TOWNHALL_MODELS_DIR": str(tmp / "models"),
    }
    env.update(overrides)
    return env
