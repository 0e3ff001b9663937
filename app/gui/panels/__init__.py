"""Dock contents of the main window: one small module per panel."""
