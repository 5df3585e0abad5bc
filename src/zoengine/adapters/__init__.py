"""Adapters (placeholder until the adapter module lands)."""

from __future__ import annotations

from zoengine.errors import ConfigError


def validate_config(cfg) -> None:  # noqa: ANN001
    if cfg.method not in ("full", "subset"):
        raise ConfigError(f"unknown adapter; allowed: full, subset (got {cfg.method!r})", field="adapter.method")
