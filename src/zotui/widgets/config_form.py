"""Config form fields: a label, an input or picker, and an inline error line with the allowed values.

A ``FormField`` edits one dotted key of ``RunConfig`` (``optimizer.lr``) as text, because
``RunConfig.set`` parses strings exactly as the CLI's ``--set`` does; the form and the command line
therefore accept the same values and produce the same errors. Fields never validate by themselves:
the setup screen builds a config from all fields and routes each ``ConfigError`` back to the field
it names.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select, Static


def field_id(key: str) -> str:
    """CSS id of the field editing ``key`` (ids cannot contain dots)."""
    return "f-" + key.replace("+", "x-").replace(".", "-").replace("_", "-")


class FormField(Vertical):
    """One config key: text input, or a picker when ``choices`` are given."""

    DEFAULT_CSS = """
    FormField { height: auto; }
    FormField > .field-row { height: 1; }
    FormField .field-label { width: 18; color: $text-muted; }
    FormField Input, FormField Select { width: 1fr; }
    FormField > .field-error { color: $error; display: none; padding-left: 18; }
    FormField.-invalid > .field-error { display: block; }
    FormField.-invalid .field-label { color: $error; }
    """

    class Changed(Message):
        """The user edited the field (not sent for programmatic ``set_value``)."""

        def __init__(self, form_field: FormField, value: str) -> None:
            super().__init__()
            self.form_field = form_field
            self.value = value

        @property
        def control(self) -> FormField:
            return self.form_field

    def __init__(
        self,
        key: str,
        label: str,
        value: str = "",
        help: str = "",
        choices: Sequence[tuple[str, str]] | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=field_id(key), classes=classes)
        self.key = key
        self.label = label
        self.help = help
        self._choices = list(choices) if choices is not None else None
        self._value = value
        self._error = ""
        # a value we set ourselves (the initial one included: Input reports it when mounted): its
        # change event is not the user's, so a method's defaults never count as typed
        self._programmatic: str | None = value

    def compose(self) -> ComposeResult:
        with Horizontal(classes="field-row"):
            yield Label(self.label, classes="field-label")
            if self._choices is not None:
                options = [(text, value) for value, text in self._choices]
                known = {v for v, _ in self._choices}
                initial = self._value if self._value in known else Select.NULL
                yield Select(
                    options,
                    value=initial,
                    allow_blank=initial is Select.NULL,
                    compact=True,
                    id=f"{self.id}-input",
                )
            else:
                yield Input(
                    self._value,
                    placeholder=self.help,
                    compact=True,
                    id=f"{self.id}-input",
                    tooltip=self.help or None,
                )
        yield Static(self._error, classes="field-error")

    @property
    def value(self) -> str:
        return self._value

    def set_value(self, value: str) -> None:
        """Set the text without posting ``Changed`` (loading a file, applying a preset)."""
        self._value = value
        if not self.is_mounted:
            return
        if self._choices is not None:
            select = self.query_one(Select)
            if value in {v for v, _ in self._choices} and select.value != value:
                self._programmatic = value
                select.value = value
        elif self.query_one(Input).value != value:
            self._programmatic = value
            self.query_one(Input).value = value

    def set_choices(self, choices: Sequence[tuple[str, str]]) -> None:
        """Replace a picker's choices (presets of another optimizer); the selection is cleared."""
        self._choices = list(choices)
        self._value = ""
        if self.is_mounted:
            self.query_one(Select).set_options([(text, value) for value, text in self._choices])

    def show_error(self, message: str | None) -> None:
        """Show (or clear) the inline error; the message names the allowed values."""
        self._error = message or ""
        self.set_class(bool(message), "-invalid")
        for line in self.query(".field-error").results(Static):  # absent until composed
            line.update(self._error)

    @property
    def error(self) -> str:
        """The error shown under the field ("" when valid)."""
        return self._error

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._value = event.value
        self._post_unless_programmatic(event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is Select.NULL:
            return
        self._value = str(event.value)
        self._post_unless_programmatic(self._value)

    def _post_unless_programmatic(self, value: str) -> None:
        ours, self._programmatic = self._programmatic, None
        if ours is not None and value == ours:
            return
        self.post_message(self.Changed(self, value))
