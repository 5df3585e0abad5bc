"""Zeroth-order optimizers (placeholder until the optimizer module lands)."""

from __future__ import annotations

from zoengine.errors import ConfigError


def validate_config(cfg) -> None:  # noqa: ANN001
    if cfg.name not in ("mezo_sgd",):
        raise ConfigError(f"unknown optimizer; allowed: mezo_sgd (got {cfg.name!r})", field="optimizer.name")
