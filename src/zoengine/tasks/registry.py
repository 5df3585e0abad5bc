"""The named tasks: MeZO's templates over SuperGLUE/GLUE data, and the zoo data sets' default prompts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from zoengine.errors import DataError

Prepare = Callable[[dict[str, str]], dict[str, str]]


@dataclass(frozen=True)
class TemplateSpec:
    """One MeZO task: prompt, verbalizer, label convention of the SuperGLUE/GLUE data, hub default."""

    template: str
    label_names: tuple[str, ...]  # in the data's label-index order
    label_words: tuple[str, ...]  # [] for multiple choice
    columns: tuple[str, ...]  # columns the rows must have
    description: str
    hub_id: str
    hub_config: str | None = None
    kind: str = "classification"
    choice_columns: tuple[str, ...] = ()
    label_aliases: Mapping[str, int] = field(default_factory=dict)  # string labels of the original files
    prepare: Prepare | None = None  # MeZO's per-example text fixes


def _prepare_boolq(f: dict[str, str]) -> dict[str, str]:
    """MeZO: the question gets a trailing "?" and a capital first letter."""
    q = f.get("question", "").strip()
    if not q.endswith("?"):
        q += "?"
    return {**f, "question": q[:1].upper() + q[1:]}


def _prepare_wsc(f: dict[str, str]) -> dict[str, str]:
    """MeZO lower-cases the pronoun span."""
    return {**f, "span2_text": f.get("span2_text", "").lower()}


def _copa_choice(text: str) -> str:
    """MeZO's "correct" capitalisation: the candidate continues a sentence, so lower its first word."""
    words = text.strip().split(" ")
    if words and words[0] != "I":
        words[0] = words[0].lower()
    return " ".join(words)


def _prepare_copa(f: dict[str, str]) -> dict[str, str]:
    """Premise without its final period, then "so" (effect) or "because" (cause), then a candidate."""
    question = f.get("question", "").strip().lower()
    if question not in ("cause", "effect"):
        raise DataError(
            f"COPA column 'question' must be 'cause' or 'effect' (got {question!r})", field="task.path"
        )
    premise = f.get("premise", "").rstrip()
    if premise.endswith("."):
        premise = premise[:-1]
    return {
        **f,
        "premise": premise,
        "connective": "so" if question == "effect" else "because",
        "choice1": _copa_choice(f.get("choice1", "")),
        "choice2": _copa_choice(f.get("choice2", "")),
    }


_BOOL = {"false": 0, "true": 1}
SUPERGLUE = "aps/super_glue"

BUILTIN_TEMPLATES: dict[str, TemplateSpec] = {
    "sst2": TemplateSpec(
        template="{sentence} It was {label}",
        label_names=("negative", "positive"),
        label_words=("terrible", "great"),
        columns=("sentence",),
        description="SST-2 movie-review sentiment (MeZO prompt: '<text> It was terrible/great')",
        hub_id="stanfordnlp/sst2",
        label_aliases={"negative": 0, "positive": 1},
    ),
    "rte": TemplateSpec(
        template='{premise}\nDoes this mean that "{hypothesis}" is true? Yes or No?\n{label}',
        label_names=("entailment", "not_entailment"),
        label_words=("Yes", "No"),
        columns=("premise", "hypothesis"),
        description="RTE textual entailment, SuperGLUE (Yes/No)",
        hub_id=SUPERGLUE,
        hub_config="rte",
        label_aliases={"entailment": 0, "not_entailment": 1},
    ),
    "cb": TemplateSpec(
        template='Suppose {premise} Can we infer that "{hypothesis}"? Yes, No, or Maybe?\n{label}',
        label_names=("entailment", "contradiction", "neutral"),
        label_words=("Yes", "No", "Maybe"),
        columns=("premise", "hypothesis"),
        description="CommitmentBank 3-way entailment, SuperGLUE (Yes/No/Maybe; MeZO uses n_dev = 100)",
        hub_id=SUPERGLUE,
        hub_config="cb",
        label_aliases={"entailment": 0, "contradiction": 1, "neutral": 2},
    ),
    "boolq": TemplateSpec(
        template="{passage} {question} {label}",
        label_names=("false", "true"),
        label_words=("No", "Yes"),
        columns=("passage", "question"),
        description="BoolQ yes/no questions about a passage, SuperGLUE",
        hub_id=SUPERGLUE,
        hub_config="boolq",
        label_aliases=_BOOL,
        prepare=_prepare_boolq,
    ),
    "wsc": TemplateSpec(
        template='{text}\nIn the previous sentence, does the pronoun "{span2_text}" refer to {span1_text}? '
        "Yes or No?\n{label}",
        label_names=("false", "true"),
        label_words=("No", "Yes"),
        columns=("text", "span1_text", "span2_text"),
        description="Winograd schema pronoun resolution, SuperGLUE (Yes/No)",
        hub_id=SUPERGLUE,
        hub_config="wsc.fixed",
        label_aliases=_BOOL,
        prepare=_prepare_wsc,
    ),
    "wic": TemplateSpec(
        template='Does the word "{word}" have the same meaning in these two sentences? Yes, No?\n'
        "{sentence1}\n{sentence2}\n{label}",
        label_names=("false", "true"),
        label_words=("No", "Yes"),
        columns=("word", "sentence1", "sentence2"),
        description="Words in Context: same sense in two sentences?, SuperGLUE (Yes/No)",
        hub_id=SUPERGLUE,
        hub_config="wic",
        label_aliases=_BOOL,
    ),
    "multirc": TemplateSpec(
        template='{paragraph}\nQuestion: {question}\nI found this answer "{answer}". Is that correct? Yes or No?\n{label}',
        label_names=("false", "true"),
        label_words=("No", "Yes"),
        columns=("paragraph", "question", "answer"),
        description="MultiRC: is this answer to a question about a paragraph correct?, SuperGLUE",
        hub_id=SUPERGLUE,
        hub_config="multirc",
        label_aliases=_BOOL,
    ),
    "copa": TemplateSpec(
        template="{premise} {connective} {label}",
        label_names=("choice1", "choice2"),
        label_words=(),
        columns=("premise", "choice1", "choice2", "question"),
        description="COPA cause/effect, multiple choice: '<premise> so/because <candidate>' (MeZO uses n_dev = 100)",
        hub_id=SUPERGLUE,
        hub_config="copa",
        kind="multiple_choice",
        choice_columns=("choice1", "choice2"),
        prepare=_prepare_copa,
    ),
}


# --- zoo data sets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZooSpec:
    """Default prompt for a zoo data set; words are keyed by label name, so label order can change."""

    template: str
    words: Mapping[str, str]
    description: str


ZOO_TASKS: dict[str, ZooSpec] = {
    "rotten-tomatoes": ZooSpec(
        template="{text} It was {label}",
        words={"negative": "terrible", "positive": "great"},
        description="Rotten Tomatoes movie-review sentiment, 2 classes (MeZO SST-2 prompt, terrible/great)",
    ),
    "tweet-sentiment": ZooSpec(
        template="{text} The sentiment of this tweet is {label}",
        words={"negative": "negative", "neutral": "neutral", "positive": "positive"},
        description="Tweet sentiment, 3 classes: negative/neutral/positive",
    ),
    "bbc-news": ZooSpec(
        template="{text} Topic: {label}",
        words={n: n for n in ("business", "entertainment", "politics", "sport", "tech")},
        description="BBC News article topic, 5 classes: business/entertainment/politics/sport/tech",
    ),
}

FILE_DESCRIPTION = (
    "your own CSV/TSV/JSONL/JSON/parquet file: set task.path, task.template and task.label_words"
)

ZOO_HINT = ", ".join(ZOO_TASKS)  # for errors that suggest a zoo data set instead


def list_tasks() -> list[tuple[str, str]]:
    """(name, one-line description) of every task, zoo first, for the app's picker."""
    out = [(name, spec.description) for name, spec in ZOO_TASKS.items()]
    out += [(name, spec.description) for name, spec in BUILTIN_TEMPLATES.items()]
    out.append(("file", FILE_DESCRIPTION))
    return out
