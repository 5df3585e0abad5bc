"""The app's export screen never deletes silently: a destination that holds anything is refused
until "replace" is ticked; then the export replaces it whole, and the tick is cleared again."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.widgets import Checkbox

from zoengine.exporting import replacing_dir
from zotui.screens.export import ExportScreen

from .conftest import wait_for


async def test_export_screen_asks_before_replacing(tmp_path: Path) -> None:
    calls: list[tuple[str, Path, bool]] = []

    def export(fmt: str, dest: Path, *, force: bool = False) -> list[Path]:
        calls.append((fmt, dest, force))
        with replacing_dir(dest, force) as new:
            new.mkdir()
            (new / "adapter_config.json").write_text("{}")
        return [dest / "adapter_config.json"]

    run_dir = tmp_path / "run"
    dest = run_dir / "exports" / "native"
    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("keep me")

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(ExportScreen(export, run_dir))

    app = Host()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        screen = app.screen
        assert isinstance(screen, ExportScreen)
        await pilot.press("ctrl+e")
        await pilot.pause()
        text = screen.query_one("#export-result").render().plain  # type: ignore[attr-defined]
        assert "not exported" in text and "folder is not empty" in text and "tick 'replace'" in text
        assert calls == [] and (dest / "mine.txt").read_text() == "keep me"
        screen.query_one("#export-force", Checkbox).value = True
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: screen.written is not None)
        assert calls == [("native", dest, True)]
        assert sorted(p.name for p in dest.iterdir()) == ["adapter_config.json"]
        assert screen.query_one("#export-force", Checkbox).value is False  # each overwrite is asked for
