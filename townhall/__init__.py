"""Townhall: persona agents debating on one local language model."""

__version__ = "0.1.0"
