"""Seeded, disjoint train/dev/test splits; default sizes, or shares of a data set smaller than them."""

from __future__ import annotations

import random

from zoengine.config import TaskConfig
from zoengine.errors import DataError
from zoengine.tasks.task import Example

DEFAULT_SIZES = {"n_train": 1000, "n_dev": 500, "n_test": 1000}
DEFAULT_SHARES = {"n_train": 60, "n_dev": 20, "n_test": 20}  # of a data set smaller than the defaults


def _sizes(
    cfg: TaskConfig, total: int, separate: set[str], notes: list[str], k_train: int | None
) -> dict[str, int]:
    """Split sizes: the ones the user gave, else the defaults, else (data smaller than the defaults)
    60/20/20 shares of what the pool has left. ``separate``: splits drawn from their own file."""
    sizes: dict[str, int] = {}
    unset: list[str] = []
    for key, default in DEFAULT_SIZES.items():
        given = k_train if key == "n_train" and k_train is not None else getattr(cfg, key)
        if given is not None:
            sizes[key] = given
        elif key in separate:
            sizes[key] = default  # its own file: take up to the default, silently
        else:
            unset.append(key)
    left = total - sum(v for k, v in sizes.items() if k not in separate)
    if sum(DEFAULT_SIZES[k] for k in unset) <= left:
        sizes.update({k: DEFAULT_SIZES[k] for k in unset})
    elif unset:
        weight = sum(DEFAULT_SHARES[k] for k in unset)
        shares = {k: max(0, left) * DEFAULT_SHARES[k] // weight for k in unset}
        shares[unset[0]] += max(0, left) - sum(shares.values())
        sizes.update(shares)
        given_text = ", ".join(f"{k} = {sizes[k]}" for k in DEFAULT_SIZES if k not in unset)
        notes.append(
            f"no size given for {', '.join(unset)} and the data has only {total} examples"
            f"{' (' + given_text + ' given)' if given_text else ''}: split "
            f"{'/'.join(str(DEFAULT_SHARES[k]) for k in unset)} instead of the defaults "
            f"{'/'.join(str(DEFAULT_SIZES[k]) for k in unset)}; train/dev/test = "
            f"{sizes['n_train']}/{sizes['n_dev'] if 'n_dev' not in separate else 'file'}/"
            f"{sizes['n_test'] if 'n_test' not in separate else 'file'}"
        )
    return sizes


def make_splits(
    cfg: TaskConfig,
    pool: list[Example],
    test_pool: list[Example] | None,
    num_classes: int,
    label_names: list[str],
    notes: list[str],
    dev_pool: list[Example] | None = None,
) -> tuple[list[Example], list[Example], list[Example]]:
    """Seeded shuffle, then train (n_train or k per class), dev, test; test shrinks first, then dev.

    With a separate held-out pool (hub validation split, test file) test comes from it, as in MeZO;
    with a dev file, dev comes from it. Sizes left unset default to 1000/500/1000, or to 60/20/20
    shares of a data set smaller than that.
    """
    for key in ("n_train", "n_dev", "n_test"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 0:
            raise DataError(f"must be >= 0 (got {getattr(cfg, key)})", field=f"task.{key}")
    if cfg.k_shot is not None and cfg.k_shot <= 0:
        raise DataError(f"must be > 0 (got {cfg.k_shot})", field="task.k_shot")
    rng = random.Random(cfg.seed)
    order = list(range(len(pool)))
    rng.shuffle(order)
    total = len(pool)
    separate = {k for k, p in (("n_dev", dev_pool), ("n_test", test_pool)) if p is not None}
    k_train = num_classes * cfg.k_shot if cfg.k_shot is not None else None
    sizes = _sizes(cfg, total, separate, notes, k_train)
    n_train, want_dev, want_test = sizes["n_train"], sizes["n_dev"], sizes["n_test"]
    if cfg.k_shot is not None:
        by_class: dict[int, list[int]] = {c: [] for c in range(num_classes)}
        for i in order:
            by_class[pool[i].label].append(i)
        for c, members in by_class.items():
            if len(members) < cfg.k_shot:
                raise DataError(
                    f"class {label_names[c]!r} has only {len(members)} examples (k_shot = {cfg.k_shot})",
                    field="task.k_shot",
                )
        train_idx = [i for members in by_class.values() for i in members[: cfg.k_shot]]
        rng.shuffle(train_idx)
        taken = set(train_idx)
        rest = [i for i in order if i not in taken]
    else:
        if n_train <= 0:
            raise DataError(f"must be > 0 (got {n_train})", field="task.n_train")
        if total < n_train:
            raise DataError(
                f"data has only {total} examples (fewer than task.n_train = {n_train})",
                field="task.n_train",
            )
        train_idx, rest = order[:n_train], order[n_train:]
    train = [pool[i] for i in train_idx]
    if dev_pool is not None:
        held = list(range(len(dev_pool)))
        rng.shuffle(held)
        dev = [dev_pool[i] for i in held[:want_dev]]
        if cfg.n_dev is not None and len(dev) < want_dev:
            notes.append(
                f"dev shrunk from {want_dev} to {len(dev)}: the dev file has only {len(dev_pool)} examples"
            )
    else:
        n_dev = min(want_dev, len(rest))
        if want_dev > 0 and n_dev == 0:
            raise DataError(
                f"data has only {total} examples, none left after {len(train_idx)} for train",
                field="task.n_dev",
            )
        if n_dev < want_dev:
            notes.append(f"dev shrunk from {want_dev} to {n_dev}: the data has only {total} examples")
        dev = [pool[i] for i in rest[:n_dev]]
        rest = rest[n_dev:]
    if test_pool is not None:
        held = list(range(len(test_pool)))
        rng.shuffle(held)
        test = [test_pool[i] for i in held[:want_test]]
        available, after = len(test_pool), "in the held-out split"
    else:
        test = [pool[i] for i in rest[:want_test]]
        available, after = len(rest), f"after {len(train)} train and {len(dev)} dev"
    if want_test > 0 and not test:
        raise DataError(
            f"data has only {available} examples {after}; none left for test", field="task.n_test"
        )
    if len(test) < want_test and (cfg.n_test is not None or test_pool is None):
        notes.append(f"test shrunk from {want_test} to {len(test)}: only {available} examples {after}")
    return train, dev, test
