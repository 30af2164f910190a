"""The records every layer shares: turns, events, personas, the town-hall spec, the branch tree, cards.

Nothing here runs a debate, stores a row or draws a screen; the engine is the only thing below it.
"""
