"""Where things live: packaged data (works from a checkout and from a wheel) and user dirs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "townhall"
_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return a packaged data folder: `agents`, `themes`, `db` or `examples`.

    A wheel carries them under `townhall/_data/`; an editable install or a
    checkout reads them from the repository root.
    """
    packaged = _PACKAGE_DIR / "_data" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / name


def user_config_dir() -> Path:
    override = os.environ.get("TOWNHALL_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME))


def user_data_dir() -> Path:
    override = os.environ.get("TOWNHALL_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))


def user_cache_dir() -> Path:
    override = os.environ.get("TOWNHALL_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))


def default_db_path() -> Path:
    """`TOWNHALL_DB`, else `townhall.db` in the user data directory."""
    override = os.environ.get("TOWNHALL_DB")
    return Path(override) if override else user_data_dir() / "townhall.db"


def user_agents_dir() -> Path:
    return user_config_dir() / "agents"


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: a failed
    write (a full disk) leaves no half file, and whatever was at `path` stays as it was."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a device or a pipe (/dev/stdout): nothing to rename over
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
