"""``python -m zoengine`` (what ``torchrun -m zoengine train ...`` and ``zoengine train --nproc N`` run)."""

from zoengine.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
