"""``python -m zoengine.cli`` (how the app's backend, tests and benchmarks start a CLI subprocess)."""

from zoengine.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
