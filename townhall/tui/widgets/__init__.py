"""Widgets of the main screen: header, roster, transcript, stats, interjection box."""
