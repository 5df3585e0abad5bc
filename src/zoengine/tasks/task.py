"""``Example`` and ``Task``: the rows and the prompt-based task the objective scores."""

from __future__ import annotations

from dataclasses import dataclass, field

from zoengine.tasks.templates import parse_template, render


@dataclass(frozen=True)
class Example:
    """One row: the column values a template needs, and the index of the right option."""

    fields: dict[str, str]
    label: int
    source_index: int = -1  # row position in its source, so splits can be checked and traced


@dataclass
class Task:
    """A prompt-based task with its splits; rendering is pure so previews match training."""

    name: str
    template: str
    label_words: list[str]
    label_names: list[str]
    kind: str
    metric: str
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    description: str
    choice_columns: list[str] = field(default_factory=list)  # multiple choice: columns holding options
    source: str = ""  # where the rows came from (zoo name, file path, hub id)
    notes: list[str] = field(default_factory=list)  # non-fatal facts worth showing (shrunk splits ...)

    def prompt(self, ex: Example) -> str:
        """Template text before ``{label}``, without trailing whitespace (options bring a space)."""
        head, _ = parse_template(self.template)
        return render(head, ex.fields).rstrip()

    def suffix(self, ex: Example) -> str:
        """Template text after ``{label}`` ("" or "." usually); masked LMs need it after the mask."""
        _, tail = parse_template(self.template)
        return render(tail, ex.fields) if tail else ""

    def options(self, ex: Example) -> list[str]:
        """Continuations to score, each with a leading space: label words or the candidates."""
        if self.kind == "multiple_choice":
            return [" " + ex.fields.get(col, "").strip() for col in self.choice_columns]
        return [" " + word.strip() for word in self.label_words]

    def render_full(self, ex: Example, option_index: int) -> str:
        """Prompt + option + suffix: exactly the text a causal LM scores, for previews."""
        return self.prompt(ex) + self.options(ex)[option_index] + self.suffix(ex)

    def split_sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}

    @property
    def num_classes(self) -> int:
        return len(self.choice_columns) if self.kind == "multiple_choice" else len(self.label_words)
