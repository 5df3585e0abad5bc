"""The headless core works where the app's UI toolkit cannot be imported.

Run as a script (``python3 tests/headless_check.py``, a step of ``.ci/run``) or through
``tests/test_headless.py``. A ``sys.meta_path`` finder makes ``textual``, ``textual_plotext`` and the
app (``zotui``) unimportable, as in an environment without them installed; then every ``zoengine``
module is imported and ``zoengine methods`` runs. Exits 0 when all of that works, 1 otherwise.
"""

from __future__ import annotations

import importlib
import io
import pkgutil
import sys
from contextlib import redirect_stdout

BLOCKED = ("textual", "textual_plotext", "zotui")


class _Blocker:
    """A meta path finder that refuses the blocked top-level packages (and their submodules)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the headless core must not need it", name=name)
        return None


def main() -> int:
    sys.meta_path.insert(0, _Blocker())
    for name in BLOCKED:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        print(f"headless check: the blocker failed to block {name}", file=sys.stderr)
        return 1

    import zoengine

    modules = ["zoengine"] + [
        info.name for info in pkgutil.walk_packages(zoengine.__path__, "zoengine.") if not info.name.endswith("__main__")
    ]
    for name in modules:
        importlib.import_module(name)

    from zoengine.cli import main as cli_main

    out = io.StringIO()
    with redirect_stdout(out):
        code = cli_main(["methods"])
    if code != 0 or not out.getvalue().strip():
        print(f"headless check: `zoengine methods` exited {code} with output {out.getvalue()!r}", file=sys.stderr)
        return 1
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    if leaked:
        print(f"headless check: imported {leaked}", file=sys.stderr)
        return 1
    print(f"headless check: {len(modules)} zoengine modules import and `zoengine methods` runs without {', '.join(BLOCKED)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
