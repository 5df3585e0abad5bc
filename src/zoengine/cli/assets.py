"""``zoengine assets list | fetch | path``: the offline zoo from the command line.

Errors reach :func:`zoengine.cli.main` like every other command's: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import zoengine.assets
from zoengine.assets import asset_path, fetch, get_asset, is_fetched, list_assets
from zoengine.errors import AssetError


class _StderrProgress:
    """Progress on stderr: one line per stage, plus a tqdm bar while a stage reports fractions."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, fraction: float | None) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            print(f"{self.name}: {stage}", file=sys.stderr)
        if fraction is None:
            return
        if fraction >= 1.0:
            self.close()
            return
        if self.bar is None:
            self.bar = tqdm(
                total=100, desc=self.name, unit="%", file=sys.stderr, leave=False, mininterval=0.5
            )
        pct = int(fraction * 100)
        if pct > self.bar.n:
            self.bar.update(pct - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [("NAME", "KIND", "SIZE", "FETCHED", "DESCRIPTION")]
    for asset in list_assets():
        rows.append(
            (
                asset.name,
                asset.kind,
                asset.size_hint,
                "yes" if is_fetched(asset.name) else "no",
                asset.description,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    names = [a.name for a in list_assets()] if args.all else list(args.names)
    if not names:
        raise AssetError("name at least one asset or pass --all", field="assets fetch")
    for name in names:
        get_asset(name)  # fail on a typo before downloading anything
    for name in names:
        bar = _StderrProgress(name)
        start = time.monotonic()
        try:
            path = fetch(name, progress=bar, force=args.force)
        finally:
            bar.close()
        print(f"{name}: {path} ({time.monotonic() - start:.1f} s)", file=sys.stderr)
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    print(asset_path(args.name))
    return 0


def add_assets_parser(subparsers: Any) -> None:
    """Add ``assets list|fetch|path`` to the main parser's subparsers (bare ``assets`` lists)."""
    doc = (zoengine.assets.__doc__ or "").split("\n", 1)[0]  # its first line (none under -OO)
    parser = subparsers.add_parser("assets", help="offline model and data set zoo", description=doc or None)
    parser.set_defaults(func=_cmd_list)
    sub = parser.add_subparsers(dest="assets_command", metavar="{list,fetch,path}")
    p_list = sub.add_parser("list", help="show the zoo and what is fetched")
    p_list.set_defaults(func=_cmd_list)
    p_fetch = sub.add_parser("fetch", help="download and convert assets into the cache")
    p_fetch.add_argument("names", nargs="*", metavar="NAME", help="asset name(s)")
    p_fetch.add_argument("--all", action="store_true", help="fetch every asset")
    p_fetch.add_argument("--force", action="store_true", help="fetch again even if present")
    p_fetch.set_defaults(func=_cmd_fetch)
    p_path = sub.add_parser("path", help="print the converted asset's folder")
    p_path.add_argument("name", metavar="NAME")
    p_path.set_defaults(func=_cmd_path)
