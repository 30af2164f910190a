"""The interjection file: appends, rewrites by rename, saves that add nothing; a real temp file, no model."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from townhall.debate.interject_file import InterjectionFile, new_text
from townhall.errors import ConfigError


def save_by_rename(path: Path, text: str) -> None:
    """An editor's atomic save: a new file renamed over the old one."""
    tmp = path.with_suffix(".swp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def test_new_text_takes_the_growth_or_the_whole() -> None:
    assert new_text("Walt, why?\n", "Walt, why?\nPriya, when?\n") == "Priya, when?"
    assert new_text("Walt, why?\n", "Something else\n") == "Something else"
    assert new_text("Same\n", "Same\n\n") == ""


async def test_append_rename_and_empty_saves(tmp_path: Path) -> None:
    path = tmp_path / "questions.txt"
    path.write_text("already there\n", encoding="utf-8")
    got: list[tuple[str, str]] = []
    feed = InterjectionFile(path, poll_s=0.01)
    feed.check()
    task = asyncio.create_task(feed.run(lambda text, source: got.append((text, source))))

    async def settle(count: int) -> None:
        for _ in range(300):
            if len(got) >= count:
                return
            await asyncio.sleep(0.01)

    with path.open("a", encoding="utf-8") as f:
        f.write("Walt, what would the ramps cost per year?\n")
    await settle(1)
    save_by_rename(path, "Priya, is the library open late?\n")
    await settle(2)
    save_by_rename(path, "Priya, is the library open late?\n   \n")  # a save that adds nothing
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert got == [("Walt, what would the ramps cost per year?", "file"),
                   ("Priya, is the library open late?", "file")]


def test_a_file_made_later_is_watched_and_a_folder_is_refused(tmp_path: Path) -> None:
    feed = InterjectionFile(tmp_path / "later.txt")
    feed.check()
    assert feed.poll() is None
    (tmp_path / "later.txt").write_text("Hello?", encoding="utf-8")
    assert feed.poll() == "Hello?"
    assert feed.poll() is None  # once per save
    with pytest.raises(ConfigError, match="not a file"):
        InterjectionFile(tmp_path).check()
