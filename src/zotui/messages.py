"""App-level messages (past-tense nouns): posted from worker threads, handled on the UI thread."""

from __future__ import annotations

from textual.message import Message

from zotui.runner import EngineRunner


class RunEnded(Message):
    """The engine thread of ``runner`` has ended with ``status``."""

    def __init__(self, runner: EngineRunner, status: str) -> None:
        super().__init__()
        self.runner = runner
        self.status = status


class FetchProgressed(Message):
    """Asset ``name`` reached ``stage`` (``fraction`` in 0..1, or None when unknown)."""

    def __init__(self, name: str, stage: str, fraction: float | None) -> None:
        super().__init__()
        self.name = name
        self.stage = stage
        self.fraction = fraction
