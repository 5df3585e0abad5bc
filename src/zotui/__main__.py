"""Command line entry point: ``zotui [--config FILE] [--run DIR] [--demo]``.

``make_app`` builds the app from explicit arguments; tests and the benchmark use it too, with a
backend of their own. ``main`` guarantees the engine thread has ended before the process exits,
whatever way the app was left. ``--demo`` is the same app and engine on the tiny model of
``zotui.demo``, with a temporary runs home (``start_demo``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zotui.app import THEMES, ZoApp
from zotui.backend import Backend, engine_backend


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
    p.add_argument(
        "--demo",
        action="store_true",
        help="train a tiny model built on the spot (no download); runs go to a temporary folder",
    )
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
    demo_runs = None
    if args.demo:
        config, demo_runs = start_demo(config)
    app = make_app(
        config,
        args.config,
        args.run,
        engine_backend(),
        theme=THEMES[1] if args.light else THEMES[0],
    )
    try:
        app.run()
    finally:
        if not app.shutdown_engine(timeout=120):
            print("zotui: the engine did not stop within 120 s", file=sys.stderr)
        if demo_runs is not None:
            print(f"zotui: the demo's runs are in {demo_runs} (temporary)", file=sys.stderr)
    return 0 if app.return_code in (None, 0) else int(app.return_code)


def start_demo(config: RunConfig | None = None) -> tuple[RunConfig, Path]:
    """Build the demo model once (``zotui.demo``, in the cache) and make a new temporary folder
    this process's runs home, so demo runs, the Runs screen and comparisons never touch the user's.

    Returns ``config`` (or a fresh one) training the demo model, with ``run.output_dir`` cleared
    (its runs go to the temporary home), and that home."""
    from zotui import demo

    print("zotui: preparing the demo model…", file=sys.stderr)
    cfg = demo.demo_config(demo.build(), config)
    cfg.run.output_dir = None
    runs = Path(tempfile.mkdtemp(prefix="zotui-demo-"))
    os.environ["ZOENGINE_RUNS"] = str(runs)
    return cfg, runs


if __name__ == "__main__":
    sys.exit(main())
