"""Command line entry point: ``zotui [--config FILE] [--run DIR] [--demo]``.

``make_app`` builds the app from explicit arguments; tests and the benchmark use it too, with a
backend of their own. ``main`` guarantees the engine thread has ended before the process exits,
whatever way the app was left.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zotui.app import THEMES, ZoApp
from zotui.backend import Backend, demo_backend, engine_backend


def make_app(
    config: RunConfig | None = None,
    config_path: Path | None = None,
    open_run: Path | None = None,
    backend: Backend | None = None,
    check_assets: bool = True,
    theme: str = THEMES[0],
) -> ZoApp:
    """Build the app; ``backend`` defaults to the real engine."""
    return ZoApp(
        backend or engine_backend(),
        config=config,
        config_path=config_path,
        open_run=open_run,
        check_assets=check_assets,
        theme=theme,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="zotui", description="Zeroth-order fine-tuning in the terminal.")
    p.add_argument("--config", type=Path, help="a run configuration (TOML) to start from")
    p.add_argument("--run", type=Path, help="open a run directory (replay its curves)")
    p.add_argument("--demo", action="store_true", help="use a scripted engine (no model needed)")
    p.add_argument("--demo-step-delay", type=float, default=0.05, help=argparse.SUPPRESS)
    p.add_argument("--light", action="store_true", help="start with the light theme")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = RunConfig.load(args.config) if args.config else None
    except ZOError as exc:
        print(f"zotui: {exc.one_line()}", file=sys.stderr)
        return 2
    if args.run is not None and not args.run.is_dir():
        print(f"zotui: --run: not a directory: {args.run}", file=sys.stderr)
        return 2
    backend = demo_backend(step_delay=args.demo_step_delay) if args.demo else engine_backend()
    app = make_app(
        config,
        args.config,
        args.run,
        backend,
        check_assets=not args.demo,
        theme=THEMES[1] if args.light else THEMES[0],
    )
    try:
        app.run()
    finally:
        if not app.shutdown_engine(timeout=120):
            print("zotui: the engine did not stop within 120 s", file=sys.stderr)
    return 0 if app.return_code in (None, 0) else int(app.return_code)


if __name__ == "__main__":
    sys.exit(main())
