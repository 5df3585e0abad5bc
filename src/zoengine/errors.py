"""One error family for everything a user can get wrong.

Every error carries the config field it is about and what is allowed, so the CLI and the app can
show a single line ("optimizer.lr: must be > 0 (got -1.0)") instead of a traceback.
"""

from __future__ import annotations


class ZOError(Exception):
    """Base class: a problem the user can fix. ``str(err)`` is one line."""

    def __init__(self, message: str, field: str | None = None, hint: str | None = None) -> None:
        self.field = field
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        if self.hint:
            text += f" ({self.hint})"
        return " ".join(text.split())


class ConfigError(ZOError):
    """A configuration value is out of range, of the wrong type, or unknown."""


class AssetError(ZOError):
    """A zoo asset is unknown, cannot be fetched, or fails its checksum."""


class DataError(ZOError):
    """A data file, column, template or split is unusable."""


class ModelError(ZOError):
    """A model cannot be found or loaded."""


class AdapterError(ZOError):
    """Adapter settings do not fit the model (rank, targets, TT shapes)."""


class CheckpointError(ZOError):
    """A run directory or checkpoint is missing or inconsistent."""
