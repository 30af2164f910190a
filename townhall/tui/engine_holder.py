"""The engine across debates: built on first use, rebuilt when a town hall asks for another model.

An engine handed in by the caller (tests, `bench`) belongs to the caller and is never
closed here; one built from the factory is closed when it is replaced or the app ends.
"""

from __future__ import annotations

from collections.abc import Callable

from townhall.engine.base import Engine
from townhall.engine.factory import EngineConfig

EngineFactory = Callable[[EngineConfig], Engine]


class EngineHolder:
    def __init__(self, engine: Engine | None, factory: EngineFactory | None, config: EngineConfig | None) -> None:
        if engine is None and factory is None:
            raise ValueError("the TUI needs an engine or an engine_factory")
        self.engine = engine
        self.factory = factory
        self.config = config or EngineConfig()
        self._owned = engine is None

    @property
    def can_rebuild(self) -> bool:
        return self.factory is not None

    async def ready(self, wanted: EngineConfig | None = None) -> Engine:
        """The started engine for `wanted` (None: the current configuration)."""
        if wanted is not None and wanted != self.config:
            await self.aclose()
            self.config = wanted
        if self.engine is None:
            assert self.factory is not None
            self.engine = self.factory(self.config)
            self._owned = True
        await self.engine.start()
        return self.engine

    async def aclose(self) -> None:
        if self.engine is not None and self._owned:
            await self.engine.aclose()
            self.engine = None
