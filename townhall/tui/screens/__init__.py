"""Screens pushed over the main one: new town hall, sessions browser, errors."""
