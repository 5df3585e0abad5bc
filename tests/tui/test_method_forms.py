"""The setup form's method fields are the schema's: every adapter and optimizer, as mounted."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Select, TabbedContent

from zoengine.adapters import ADAPTERS
from zoengine.optim import OPTIMIZERS
from zoengine.schema import Setting
from zotui import catalog
from zotui.screens.setup import SetupScreen, as_text
from zotui.widgets.config_form import FormField, field_id

from .conftest import demo_config


@pytest.fixture
def quiet_previews(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model, no data behind the previews: the point is which fields are mounted."""
    monkeypatch.setattr(catalog, "trainable_count", lambda cfg: None)
    monkeypatch.setattr(catalog, "task_preview", lambda cfg: "")
    monkeypatch.setattr(catalog, "cached_tune", lambda cfg: None)
    monkeypatch.setattr(catalog, "is_fetched", lambda name: None)


def mounted(screen: SetupScreen, section: str) -> list[tuple[str, str, str]]:
    """(field id, value, help) of the method option fields now in ``section``'s box."""
    box = screen.query_one(f"#{section}-options")
    return [
        (f.id or "", f.value, f.help) for f in box.query(FormField) if not (f.id or "").endswith("options")
    ]


def expected(section: str, settings: list[Setting]) -> list[tuple[str, str, str]]:
    return [(field_id(f"{section}.{s.key}"), as_text(s.default), s.help_text()) for s in settings]


async def test_every_method_form_shows_the_schema_options_defaults_and_help(
    make_demo_app, tmp_path: Path, quiet_previews
) -> None:
    app = make_demo_app(demo_config(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        for section, tab, key, registry in (
            ("adapter", "tab-adapter", "adapter.method", ADAPTERS),
            ("optimizer", "tab-optimizer", "optimizer.name", OPTIMIZERS),
        ):
            screen.query_one("#setup-tabs", TabbedContent).active = tab
            await pilot.pause()
            for name, entry in registry.items():
                screen.query_one(f"#{field_id(key)}-input", Select).value = name
                for _ in range(20):  # the option fields are remounted by a worker-free async handler
                    await pilot.pause()
                    if [m[0] for m in mounted(screen, section)] == [
                        e[0] for e in expected(section, entry.settings())
                    ]:
                        break
                assert mounted(screen, section) == expected(section, entry.settings()), name
