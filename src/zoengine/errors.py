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


def filesystem_error(
    exc: BaseException, path: object, field: str, checkpoint_note: str = ""
) -> ZOError | None:
    """The one-line user error for a file-system refusal (read-only, no space, not a folder ...),
    or None when ``exc`` is not one. ``path`` is named unless the error names its own file."""
    import errno
    import shutil
    from pathlib import Path

    if isinstance(exc, ZOError):
        return exc
    where = str(getattr(exc, "filename", None) or path)
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if code is None and isinstance(exc, RuntimeError):
        # torch.save reports a failed write as a RuntimeError ("unexpected pos", "iostream error")
        text = str(exc)
        if not any(s in text for s in ("unexpected pos", "iostream error", "file write failed")):
            return None
        try:
            full = shutil.disk_usage(Path(str(path))).free < 64 * 2**20
        except OSError:
            full = False
        code = errno.ENOSPC if full else errno.EIO
    if code is None:
        return None
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        message = f"no space left on {where}"
        if checkpoint_note:
            message += f"; {checkpoint_note}"
    elif code == errno.EROFS:
        message = f"read-only file system: {where}; choose a writable folder"
    elif code in (errno.EACCES, errno.EPERM):
        message = f"permission denied: {where}; choose a folder you can write"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        message = f"a file is in the way (not a folder): {where}"
    elif code == errno.EISDIR:
        message = f"is a folder, expected a file: {where}"
    elif code == errno.ENAMETOOLONG:
        message = f"name too long: {where}"
    elif code == errno.ENOENT:
        message = f"no such file or folder: {where}"
    else:
        message = f"cannot write {where}: {getattr(exc, 'strerror', None) or exc}"
    return ZOError(message, field=field)
