"""User settings of the app: a keymap that rebinds any action id, read from a TOML file.

    # ~/.config/zotui/keymap.toml  (or the file named by $ZOTUI_KEYMAP)
    [keys]
    start-run = "f9"
    pause-resume = "p,space"

Every binding of the app has an id (listed with F1), so any key can be moved without code changes.
A broken file is reported and ignored: a typo in a keymap must not stop the app from opening.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import platformdirs


def keymap_path() -> Path:
    env = os.environ.get("ZOTUI_KEYMAP")
    return Path(env) if env else Path(platformdirs.user_config_dir("zotui")) / "keymap.toml"


def load_keymap(path: Path | None = None) -> tuple[dict[str, str], str | None]:
    """(binding id -> keys, problem or None); a missing file is an empty keymap, not a problem."""
    path = path or keymap_path()
    if not path.is_file():
        return {}, None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return {}, f"{path}: {exc}"
    keys = data.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        return {}, f"{path}: [keys] must map binding ids to key strings"
    return {str(k): v for k, v in keys.items()}, None
