"""What every collaborator of one run shares: the engine, the town hall, who takes part, the
path, how it publishes, and the agents' ids on the engine.

The clerk, the prompt builder, the turn taker and the voting each take one `RunParts` instead
of the same six arguments, so they all see the same engine, spec, cast and transcript, publish
through the same announcer and name the agents' KV states alike. Each still takes what is its
own (seeds, a context strategy, the other collaborators) on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from townhall.debate.announcing import Announcer
from townhall.debate.cast import Cast
from townhall.debate.transcript import Transcript
from townhall.domain.spec import TownHallSpec
from townhall.engine.base import Engine


@dataclass(frozen=True)
class RunParts:
    engine: Engine
    spec: TownHallSpec
    cast: Cast
    transcript: Transcript
    out: Announcer
    agent_key: Callable[[str], str]  # a participant's name -> the engine's id for its KV state
