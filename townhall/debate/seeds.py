"""Sampling seeds: derived from the session seed when there is one, else drawn at random.

A seeded session repeats exactly (tests compare transcripts, `townhall generate` relies on
it), so every request's seed is a pure function of the session seed, the turn's index, the
resample and a salt. The salt keeps requests at the same turn apart: a turn's salt is its
branch number less one (branch 1 keeps the seeds of a session without branches; a turn
regenerated on a new branch draws anew), and each of the clerk's one-off calls has its own.
The values are what they always were, so old seeded sessions still repeat.
"""

from __future__ import annotations

import random
from enum import IntEnum

SEED_SPACE = 2**31 - 1


def derive_seed(base: int, index: int, retry: int, salt: int = 0) -> int:
    """A request's sampling seed from the session seed, so a seeded run repeats exactly."""
    return (base * 1_000_003 + index * 7_919 + retry * 104_729 + salt * 15_485_863) % SEED_SPACE


class OneOff(IntEnum):
    """The clerk's one-off model calls, each with its own salt (`Seeds.one_off`).

    They share the salts of the turns of branches 2 to 4 at retry 0: a coincidence of the
    original numbering, kept because changing it would change seeded sessions."""

    SUMMARY = 1
    SPEAKER_CHOICE = 2
    MINUTES_REASON = 3


class Seeds:
    """Every seed a run asks for, from one place. `rng` is the run's generator (also the
    policies'), used only when the session has no seed."""

    def __init__(self, seed: int | None, rng: random.Random) -> None:
        self.seed = seed
        self.rng = rng

    def turn(self, index: int, retry: int, branch: int) -> int:
        """A turn's draw (`retry` counts resamples) on branch `branch`."""
        return self._derive(index, retry, salt=branch - 1)

    def one_off(self, call: OneOff, index: int) -> int:
        """One of the clerk's calls made when the path holds `index` turns."""
        return self._derive(index, 0, salt=int(call))

    def _derive(self, index: int, retry: int, salt: int) -> int:
        if self.seed is None:
            return self.rng.randrange(SEED_SPACE)
        return derive_seed(self.seed, index, retry, salt)
