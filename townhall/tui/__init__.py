"""The Textual TUI: watch a town hall debate, steer it, browse the record."""
