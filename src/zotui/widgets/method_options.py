"""The option fields of the chosen adapter or optimizer, built from its catalog spec.

A ``MethodOptions`` box holds one field per option the method's spec declares (at the config's
value, else the option's default) and an "other options" field for the keys the spec does not cover.
Picking another method rebuilds the box; what the user typed into an option is remembered per key,
across methods, and carried over to a method with the same option (defaults never count as typed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual import on
from textual.containers import Vertical

from zotui import catalog
from zotui.form_values import EXTRA, as_text
from zotui.widgets.config_form import FormField

COMMON_KEYS = ("method", "name", "targets", "layers", *catalog.COMMON_OPTIMIZER_KEYS)  # not method options


def preset_choices(spec: catalog.MethodSpec | None) -> list[tuple[str, str]]:
    """The paper presets of an optimizer, for the preset picker."""
    return [(name, name) for name in (spec.presets if spec else {})]


def preset_values(spec: catalog.MethodSpec | None, name: str) -> dict[str, Any]:
    """Dotted key → value for the paper preset ``name`` of an optimizer: its options at their
    defaults (the papers'), then the preset's common settings (batch size and steps are ``run.``)."""
    values = {o.key: o.default for o in (spec.options if spec else [])}
    values.update(spec.presets.get(name, {}) if spec else {})
    out: dict[str, Any] = {}
    for key, value in values.items():
        dotted = key if "." in key else f"optimizer.{key}"
        if dotted in ("optimizer.batch_size", "optimizer.steps"):
            dotted = "run." + dotted.split(".")[1]
        out[dotted] = value
    return out


class MethodOptions(Vertical):
    """The option fields of ``section``'s method (``adapter`` or ``optimizer``)."""

    def __init__(self, section: str, specs: Mapping[str, catalog.MethodSpec]) -> None:
        super().__init__(id=f"{section}-options")
        self.section = section
        self.specs = specs
        self.method: str | None = None  # whose fields are mounted (None until the first ``show``)
        self.typed: dict[str, str] = {}  # option key -> text the user typed (kept across methods)

    @property
    def spec(self) -> catalog.MethodSpec | None:
        """The spec of the mounted method (None: none mounted yet, or a method the catalog lacks)."""
        return self.specs.get(self.method) if self.method is not None else None

    async def show(self, method: str, values: Mapping[str, Any], force: bool = False) -> bool:
        """Replace the fields with those of ``method``'s spec, filled from ``values``; keys the spec
        does not declare go to "other options". False when ``method``'s fields are already shown."""
        if not force and self.method == method:
            return False  # pickers also report their initial value: nothing changed
        self.method = method
        spec = self.specs.get(method)
        await self.remove_children()
        rest = dict(values)
        fields: list[FormField] = []
        for opt in spec.options if spec else []:
            value = rest.pop(opt.key, opt.default)
            choices = [(c, c) for c in opt.choices] if opt.choices else None
            fields.append(
                FormField(
                    f"{self.section}.{opt.key}", opt.key, as_text(value), help=opt.help, choices=choices
                )
            )
        extra = ", ".join(f"{k}={as_text(v)}" for k, v in rest.items())
        fields.append(
            FormField(f"{self.section}.{EXTRA}", "other options", extra, help="key=value, key=value")
        )
        await self.mount_all(fields)
        return True

    def typed_for(self, method: str) -> dict[str, str]:
        """What the user typed into the options that ``method`` has too."""
        spec = self.specs.get(method)
        return {o.key: self.typed[o.key] for o in (spec.options if spec else []) if o.key in self.typed}

    @on(FormField.Changed)
    def _remember_typed(self, event: FormField.Changed) -> None:
        """Note the user's text (the event goes on to the screen, which validates the form)."""
        name = event.form_field.key.partition(".")[2]
        if name not in (*COMMON_KEYS, EXTRA):
            self.typed[name] = event.value
