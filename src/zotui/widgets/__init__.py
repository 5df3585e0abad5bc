"""Widgets: display only; they receive plain data and never talk to the engine."""
