"""Route llama.cpp's C-level log into a ring buffer instead of stderr.

llama.cpp writes to stderr directly (e.g. "using full-size SWA cache") even with
`verbose=False`; in the TUI that would tear the screen. The lines are kept for doctor
and error messages.
"""

from __future__ import annotations

import ctypes
from collections import deque

_lines: deque[str] = deque(maxlen=200)
_installed: list[object] = []  # keep the ctypes callback alive


def install() -> None:
    if _installed:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        try:
            line = text.decode("utf-8", errors="replace").rstrip("\n")
        except Exception:  # noqa: BLE001 - never raise into C
            return
        if line:
            _lines.append(line)

    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    _installed.append(_callback)


def recent(n: int = 20) -> list[str]:
    return list(_lines)[-n:]
