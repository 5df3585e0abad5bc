"""Tasks: every source on tiny synthetic files, exact MeZO prompts, split rules, one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from zoengine.config import TaskConfig
from zoengine.errors import ConfigError, DataError, ZOError
from zoengine.tasks import BUILTIN_TEMPLATES, Example, Task, check_label_words, list_tasks, load_task, sources

# --- helpers --------------------------------------------------------------------------------------


def cfg(**kw: Any) -> TaskConfig:
    kw.setdefault("n_train", 4)
    kw.setdefault("n_dev", 2)
    kw.setdefault("n_test", 2)
    return TaskConfig(**kw)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def sentiment_rows(n: int = 20) -> list[dict[str, Any]]:
    return [{"review": f"movie number {i} .", "stars": i % 2, "extra": "x"} for i in range(n)]


def expect_error(exc_type: type[ZOError], field: str, fn: Any, *args: Any) -> str:
    """The error is of the given type, names the field first, and is one line."""
    with pytest.raises(exc_type) as info:
        fn(*args)
    text = str(info.value)
    assert info.value.field == field
    assert text.startswith(f"{field}: ")
    assert "\n" not in text
    return text


def load_one(name: str, row: dict[str, Any], tmp_path: Path, **kw: Any) -> tuple[Task, Example]:
    """A MeZO task over copies of one row; every split holds that row."""
    path = write_jsonl(tmp_path / f"{name}.jsonl", [row] * 4)
    task = load_task(cfg(name=name, path=str(path), n_train=2, n_dev=1, n_test=1, **kw))
    return task, task.train[0]


# --- file sources ---------------------------------------------------------------------------------


def test_csv_with_string_labels_uses_sorted_label_names_as_words(tmp_path: Path) -> None:
    rows = [{"sentence": f"s{i}", "label": "pos" if i % 2 else "neg"} for i in range(10)]
    path = write_csv(tmp_path / "d.csv", rows)
    task = load_task(cfg(name="file", path=str(path), template="{sentence} Overall: {label}"))
    assert task.label_names == ["neg", "pos"] and task.label_words == ["neg", "pos"]
    ex = task.train[0]
    assert task.prompt(ex) == f"{ex.fields['sentence']} Overall:"
    assert task.options(ex) == [" neg", " pos"]
    assert task.suffix(ex) == ""
    assert task.render_full(ex, 1) == f"{ex.fields['sentence']} Overall: pos"
    assert task.kind == "classification" and task.metric == "accuracy"
    for e in task.train + task.dev + task.test:
        assert task.label_names[e.label] == ("pos" if int(e.fields["sentence"][1:]) % 2 else "neg")


def test_string_labels_equal_to_label_words_keep_the_words_order(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": ["good", "bad"][i % 2]} for i in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    task = load_task(cfg(name="file", path=str(path), label_words=["good", "bad"]))
    assert task.label_words == ["good", "bad"]
    for e in task.train:
        assert e.label == int(e.fields["text"][1:]) % 2


def test_jsonl_with_int_labels_and_default_text_column(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": i % 3} for i in range(12)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    task = load_task(cfg(name="file", path=str(path), label_words=["bad", "okay", "good"]))
    assert task.template == "{text} Answer: {label}"
    assert any("template" in n for n in task.notes)
    assert task.label_names == ["bad", "okay", "good"]
    ex = task.train[0]
    assert task.prompt(ex) == f"{ex.fields['text']} Answer:"
    assert ex.label == int(ex.fields["text"][1:]) % 3


def test_non_contiguous_int_labels_need_an_explicit_label_map(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": [-1, 1][i % 2]} for i in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    text = expect_error(
        DataError, "task.label_map", load_task, cfg(name="file", path=str(path), label_words=["no", "yes"])
    )
    assert "-1 -> no, 1 -> yes" in text and "task.label_map=" in text
    task = load_task(
        cfg(name="file", path=str(path), label_words=["no", "yes"], label_map={"-1": "no", "1": "yes"})
    )
    for e in task.train:
        assert e.label == int(e.fields["text"][1:]) % 2


def test_parquet_and_tsv_files(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sentiment_rows()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    write_csv(tmp_path / "d.tsv", rows, delimiter="\t")
    for name in ("d.parquet", "d.tsv"):
        task = load_task(
            cfg(
                name="file",
                path=str(tmp_path / name),
                label_column="stars",
                template="Review: {review} It was {label}.",
                label_words=["bad", "good"],
            )
        )
        ex = task.train[0]
        assert task.prompt(ex) == f"Review: {ex.fields['review']} It was"
        assert task.suffix(ex) == "."
        assert task.render_full(ex, 0) == f"Review: {ex.fields['review']} It was bad."
        assert set(ex.fields) == {"review"}


def test_template_without_label_puts_the_option_at_the_end(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i} ", "label": i % 2} for i in range(10)])
    task = load_task(cfg(name="file", path=str(path), template="Text: {text} ->", label_words=["no", "yes"]))
    ex = task.train[0]
    assert task.prompt(ex) == f"Text: {ex.fields['text']} ->"
    assert task.suffix(ex) == ""
    assert task.render_full(ex, 1).endswith("-> yes")


def test_literal_braces_and_text_after_label(tmp_path: Path) -> None:
    rows = [{"a": f"x{i}", "b": "y", "label": i % 2} for i in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    task = load_task(
        cfg(name="file", path=str(path), template="{{{a}}} ? {label} , {b}", label_words=["No", "Yes"])
    )
    ex = task.train[0]
    assert task.prompt(ex) == "{" + ex.fields["a"] + "} ?"
    assert task.suffix(ex) == " , y"


# --- zoo data sets --------------------------------------------------------------------------------


def fake_zoo(root: Path, name: str, labels: list[str], n: int = 30) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rows = [{"text": f"{name} item {i}", "label": i % len(labels)} for i in range(n)]
    write_jsonl(folder / "data.jsonl", rows)
    meta = {"name": name, "labels": labels, "text_columns": ["text"], "num_examples": n}
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "zoo"
    fake_zoo(root, "rotten-tomatoes", ["negative", "positive"])
    fake_zoo(root, "tweet-sentiment", ["negative", "neutral", "positive"])
    fake_zoo(root, "bbc-news", ["tech", "business", "sport", "entertainment", "politics"])
    monkeypatch.setattr(sources, "_dataset_dir", lambda name: root / name)
    return root


def test_zoo_rotten_tomatoes_uses_the_mezo_sst2_prompt(zoo: Path) -> None:
    task = load_task(cfg(name="rotten-tomatoes"))
    assert task.label_words == ["terrible", "great"]
    assert task.label_names == ["negative", "positive"]
    assert task.source == "zoo:rotten-tomatoes"
    ex = task.train[0]
    assert task.prompt(ex) == f"{ex.fields['text']} It was"
    assert task.options(ex) == [" terrible", " great"]
    assert task.split_sizes() == {"train": 4, "dev": 2, "test": 2}


def test_zoo_words_follow_label_names_not_positions(zoo: Path) -> None:
    task = load_task(cfg(name="bbc-news"))
    assert task.label_words == ["tech", "business", "sport", "entertainment", "politics"]
    assert task.prompt(task.train[0]).endswith(" Topic:")
    tweet = load_task(cfg(name="tweet-sentiment", label_words=["bad", "meh", "good"]))
    assert tweet.label_words == ["bad", "meh", "good"]
    assert tweet.prompt(tweet.train[0]).endswith("The sentiment of this tweet is")


def test_zoo_goes_through_assets_ensure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    folder = fake_zoo(tmp_path, "rotten-tomatoes", ["negative", "positive"])
    fake = types.ModuleType("zoengine.assets")
    fake.ensure = lambda name: folder  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zoengine.assets", fake)
    import zoengine

    monkeypatch.setattr(zoengine, "assets", fake, raising=False)
    assert load_task(cfg(name="Rotten-Tomatoes")).name == "rotten-tomatoes"


def test_zoo_template_override_is_checked(zoo: Path) -> None:
    expect_error(
        DataError, "task.template", load_task, cfg(name="rotten-tomatoes", template="{review} {label}")
    )
    expect_error(
        DataError, "task.label_words", load_task, cfg(name="rotten-tomatoes", label_words=["a", "b", "c"])
    )


# --- MeZO templates -------------------------------------------------------------------------------


def test_sst2_prompt(tmp_path: Path) -> None:
    task, ex = load_one("sst2", {"sentence": " a gripping film ", "label": 1, "idx": 0}, tmp_path)
    assert task.render_full(ex, ex.label) == "a gripping film It was great"
    assert task.options(ex) == [" terrible", " great"]


def test_rte_prompt_and_string_labels(tmp_path: Path) -> None:
    row = {"premise": "A cat sat.", "hypothesis": "A cat sits.", "label": "entailment"}
    task, ex = load_one("rte", row, tmp_path)
    assert task.prompt(ex) == 'A cat sat.\nDoes this mean that "A cat sits." is true? Yes or No?'
    assert task.options(ex) == [" Yes", " No"]
    assert ex.label == 0 and task.label_names[ex.label] == "entailment"
    task, ex = load_one("rte", {**row, "label": 1}, tmp_path)
    assert task.render_full(ex, ex.label).endswith("Yes or No? No")


def test_cb_prompt(tmp_path: Path) -> None:
    row = {"premise": "It rained.", "hypothesis": "The ground is wet", "label": "neutral"}
    task, ex = load_one("cb", row, tmp_path)
    assert task.prompt(ex) == 'Suppose It rained. Can we infer that "The ground is wet"? Yes, No, or Maybe?'
    assert task.options(ex) == [" Yes", " No", " Maybe"]
    assert ex.label == 2


def test_boolq_prompt_fixes_the_question(tmp_path: Path) -> None:
    row = {"passage": "Water boils at 100 C.", "question": "does water boil at 100 c", "label": True}
    task, ex = load_one("boolq", row, tmp_path)
    assert task.prompt(ex) == "Water boils at 100 C. Does water boil at 100 c?"
    assert task.options(ex) == [" No", " Yes"]
    assert ex.label == 1


def test_wsc_prompt_from_flat_and_nested_rows(tmp_path: Path) -> None:
    flat = {"text": "Mark told Pete he was late.", "span1_text": "Mark", "span2_text": "He", "label": 0}
    expected = 'Mark told Pete he was late.\nIn the previous sentence, does the pronoun "he" refer to Mark? Yes or No?'
    task, ex = load_one("wsc", flat, tmp_path)
    assert task.prompt(ex) == expected and task.options(ex)[ex.label] == " No"
    nested = {
        "text": flat["text"],
        "target": {"span1_text": "Mark", "span2_text": "He", "span1_index": 0, "span2_index": 3},
        "label": True,
    }
    task, ex = load_one("wsc", nested, tmp_path)
    assert task.prompt(ex) == expected and task.options(ex)[ex.label] == " Yes"


def test_wic_prompt(tmp_path: Path) -> None:
    row = {"word": "bank", "sentence1": "The river bank.", "sentence2": "The bank loan.", "label": "false"}
    task, ex = load_one("wic", row, tmp_path)
    assert task.prompt(ex) == (
        'Does the word "bank" have the same meaning in these two sentences? Yes, No?\nThe river bank.\nThe bank loan.'
    )
    assert ex.label == 0 and task.options(ex) == [" No", " Yes"]


def test_multirc_prompt_flat_and_original_nested(tmp_path: Path) -> None:
    row = {"paragraph": "Tom has a dog.", "question": "What does Tom have?", "answer": "a dog", "label": 1}
    expected = 'Tom has a dog.\nQuestion: What does Tom have?\nI found this answer "a dog". Is that correct? Yes or No?'
    task, ex = load_one("multirc", row, tmp_path)
    assert task.prompt(ex) == expected and ex.label == 1
    nested = {
        "idx": 0,
        "passage": {
            "text": "Tom has a dog.",
            "questions": [
                {
                    "question": "What does Tom have?",
                    "answers": [{"text": "a dog", "label": 1}, {"text": "a cat", "label": 0}],
                }
            ],
        },
    }
    path = write_jsonl(tmp_path / "multirc_orig.jsonl", [nested] * 3)
    task = load_task(cfg(name="multirc", path=str(path), n_train=4, n_dev=1, n_test=1))
    by_answer = {e.fields["answer"]: e.label for e in task.train + task.dev + task.test}
    assert by_answer == {"a dog": 1, "a cat": 0}


def test_copa_is_multiple_choice_with_so_and_because(tmp_path: Path) -> None:
    row = {
        "premise": "The man broke his toe.",
        "choice1": "He dropped a hammer on his foot.",
        "choice2": "I got a hole in my sock.",
        "question": "cause",
        "label": 0,
    }
    task, ex = load_one("copa", row, tmp_path)
    assert task.kind == "multiple_choice" and task.label_words == []
    assert task.prompt(ex) == "The man broke his toe because"
    assert task.options(ex) == [" he dropped a hammer on his foot.", " I got a hole in my sock."]
    assert task.render_full(ex, 0) == "The man broke his toe because he dropped a hammer on his foot."
    task, ex = load_one("copa", {**row, "question": "effect"}, tmp_path)
    assert task.prompt(ex) == "The man broke his toe so"
    expect_error(
        DataError, "task.label_words", load_task, cfg(name="copa", path="x.jsonl", label_words=["a", "b"])
    )


def test_every_builtin_template_has_its_words_and_renders(tmp_path: Path) -> None:
    assert set(BUILTIN_TEMPLATES) == {"sst2", "rte", "cb", "boolq", "wsc", "wic", "multirc", "copa"}
    for name, spec in BUILTIN_TEMPLATES.items():
        assert spec.kind == "multiple_choice" or len(spec.label_words) == len(spec.label_names)
        row = {c: f"{c} value" for c in spec.columns} | {"label": 0}
        if name == "copa":
            row["question"] = "effect"
        task, ex = load_one(name, row, tmp_path)
        assert task.prompt(ex) and task.prompt(ex) == task.prompt(ex).rstrip()
        assert all(opt.startswith(" ") for opt in task.options(ex))


def test_builtin_folder_uses_val_file_as_test(tmp_path: Path) -> None:
    folder = tmp_path / "RTE"
    folder.mkdir()
    mk = [{"premise": f"p{i}", "hypothesis": "h", "label": i % 2} for i in range(10)]
    write_jsonl(folder / "train.jsonl", mk)
    write_jsonl(folder / "val.jsonl", [{**r, "premise": f"v{i}"} for i, r in enumerate(mk[:3])])
    write_jsonl(folder / "test.jsonl", [{**r, "label": -1} for r in mk])
    task = load_task(cfg(name="RTE", path=str(folder), n_train=6, n_dev=4, n_test=5))
    assert all(e.fields["premise"].startswith("v") for e in task.test)
    assert len(task.test) == 3 and any("test shrunk" in n for n in task.notes)
    assert all(e.fields["premise"].startswith("p") for e in task.train + task.dev)


def test_builtin_missing_columns_and_bad_labels(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "r.jsonl", [{"premise": "p", "label": 0}] * 8)
    text = expect_error(DataError, "task.path", load_task, cfg(name="rte", path=str(path)))
    assert "hypothesis" in text
    own = load_task(cfg(name="rte", path=str(path), template="{premise}? {label}"))
    assert own.prompt(own.train[0]) == "p?" and own.options(own.train[0]) == [" Yes", " No"]
    path = write_jsonl(tmp_path / "r2.jsonl", [{"premise": "p", "hypothesis": "h", "label": "maybe"}] * 8)
    expect_error(DataError, "task.label_column", load_task, cfg(name="rte", path=str(path)))
    path = write_jsonl(tmp_path / "r3.jsonl", [{"premise": "p", "hypothesis": "h", "label": 7}] * 8)
    expect_error(DataError, "task.label_column", load_task, cfg(name="rte", path=str(path)))


def test_hub_id_unreachable_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError(
            "Couldn't reach 'aps/super_glue' on the Hub (OfflineModeIsEnabled)\nmore detail"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setattr(sources, "_hub_usable", lambda: True)
    text = expect_error(DataError, "task.path", load_task, cfg(name="rte"))
    assert "hub" in text and "rotten-tomatoes" in text and "aps/super_glue:rte" in text
    text = expect_error(DataError, "task.path", load_task, cfg(name="file", path="someone/my-data:main"))
    assert "someone/my-data:main" in text


def test_unreachable_hub_fails_fast_without_calling_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load_dataset must not be called")

    monkeypatch.setattr(datasets, "load_dataset", never)
    monkeypatch.setattr(sources, "_hub_usable", lambda: False)
    text = expect_error(DataError, "task.path", load_task, cfg(name="boolq"))
    assert "not reachable" in text and "HF_HUB_OFFLINE" in text and "aps/super_glue:boolq" in text


def test_hub_rows_are_split_like_mezo(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def fake_load(repo: str, config: str | None = None) -> datasets.DatasetDict:
        assert (repo, config) == ("aps/super_glue", "cb")
        row = {"premise": "p", "hypothesis": "h"}
        return datasets.DatasetDict(
            train=datasets.Dataset.from_list([{**row, "label": i % 3} for i in range(10)]),
            validation=datasets.Dataset.from_list([{**row, "premise": "v", "label": 0}] * 3),
            test=datasets.Dataset.from_list([{**row, "label": -1}] * 3),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(sources, "_hub_usable", lambda: True)
    task = load_task(cfg(name="cb", n_train=6, n_dev=4, n_test=3))
    assert task.split_sizes() == {"train": 6, "dev": 4, "test": 3}
    assert {e.fields["premise"] for e in task.test} == {"v"}


# --- splits ---------------------------------------------------------------------------------------


def split_file(tmp_path: Path, n: int = 40, classes: int = 2) -> Path:
    rows = [{"text": f"t{i}", "label": i % classes} for i in range(n)]
    return write_jsonl(tmp_path / "s.jsonl", rows)


def ids(examples: list[Example]) -> list[int]:
    return [e.source_index for e in examples]


def test_splits_are_seeded_and_disjoint(tmp_path: Path) -> None:
    path = split_file(tmp_path)
    a = load_task(cfg(name="file", path=str(path), label_words=["no", "yes"], n_train=10, n_dev=5, n_test=10))
    b = load_task(cfg(name="file", path=str(path), label_words=["no", "yes"], n_train=10, n_dev=5, n_test=10))
    c = load_task(
        cfg(name="file", path=str(path), label_words=["no", "yes"], n_train=10, n_dev=5, n_test=10, seed=7)
    )
    assert (ids(a.train), ids(a.dev), ids(a.test)) == (ids(b.train), ids(b.dev), ids(b.test))
    assert ids(a.train) != ids(c.train)
    sets = [set(ids(a.train)), set(ids(a.dev)), set(ids(a.test))]
    assert [len(s) for s in sets] == [10, 5, 10]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])


def test_k_shot_is_balanced_and_seeded(tmp_path: Path) -> None:
    path = split_file(tmp_path, n=60, classes=3)
    kw = dict(name="file", path=str(path), label_words=["a", "b", "c"], k_shot=4, n_dev=6, n_test=10)
    task = load_task(cfg(**kw))
    assert sorted(e.label for e in task.train) == [0] * 4 + [1] * 4 + [2] * 4
    assert ids(task.train) == ids(load_task(cfg(**kw)).train)
    assert not set(ids(task.train)) & (set(ids(task.dev)) | set(ids(task.test)))
    assert len(task.dev) == 6 and len(task.test) == 10
    text = expect_error(DataError, "task.k_shot", load_task, cfg(**{**kw, "k_shot": 30}))
    assert "'a'" in text


def test_short_data_shrinks_test_then_dev(tmp_path: Path) -> None:
    path = split_file(tmp_path, n=20)
    base = dict(name="file", path=str(path), label_words=["no", "yes"])
    task = load_task(cfg(**base, n_train=10, n_dev=5, n_test=10))
    assert task.split_sizes() == {"train": 10, "dev": 5, "test": 5}
    assert any("test shrunk from 10 to 5" in n for n in task.notes)
    task = load_task(cfg(**base, n_train=17, n_dev=5, n_test=0))
    assert task.split_sizes() == {"train": 17, "dev": 3, "test": 0}
    text = expect_error(DataError, "task.n_test", load_task, cfg(**base, n_train=17, n_dev=5, n_test=3))
    assert "none left for test" in text
    expect_error(DataError, "task.n_dev", load_task, cfg(**base, n_train=20, n_dev=2, n_test=0))
    expect_error(DataError, "task.n_train", load_task, cfg(**base, n_train=21, n_dev=0, n_test=0))
    expect_error(DataError, "task.n_train", load_task, cfg(**base, n_train=0))
    expect_error(DataError, "task.n_dev", load_task, cfg(**base, n_dev=-1))
    expect_error(DataError, "task.k_shot", load_task, cfg(**base, k_shot=0))
    assert load_task(cfg(**base, n_train=20, n_dev=0, n_test=0)).split_sizes()["train"] == 20


# --- errors ---------------------------------------------------------------------------------------


def test_error_paths_are_one_line_and_name_the_field(tmp_path: Path) -> None:
    good = write_jsonl(
        tmp_path / "g.jsonl", [{"text": f"t{i}", "note": "n", "label": i % 2} for i in range(12)]
    )
    words = ["no", "yes"]
    cases: list[tuple[type[ZOError], str, TaskConfig]] = [
        (ConfigError, "task.name", cfg(name="squad")),
        (DataError, "task.path", cfg(name="file")),
        (DataError, "task.path", cfg(name="file", path=str(tmp_path / "missing.csv"))),
        (DataError, "task.path", cfg(name="rte", path=str(tmp_path / "missing.jsonl"))),
        (
            DataError,
            "task.template",
            cfg(name="file", path=str(good), template="no placeholder", label_words=words),
        ),
        (
            DataError,
            "task.template",
            cfg(name="file", path=str(good), template="{label} only", label_words=words),
        ),
        (
            DataError,
            "task.template",
            cfg(name="file", path=str(good), template="{txt} {label}", label_words=words),
        ),
        (
            DataError,
            "task.template",
            cfg(name="file", path=str(good), template="{text} {label} {label}", label_words=words),
        ),
        (
            DataError,
            "task.template",
            cfg(name="file", path=str(good), template="{text:>5} {label}", label_words=words),
        ),
        (
            DataError,
            "task.template",
            cfg(name="file", path=str(good), template="{text {label}", label_words=words),
        ),
        (
            DataError,
            "task.template",
            cfg(name="file", path=str(good), template="{text} {} {label}", label_words=words),
        ),
        (
            DataError,
            "task.template",
            cfg(name="file", path=str(good), template="{text} {note} {label}", label_column="note"),
        ),
        (DataError, "task.label_words", cfg(name="file", path=str(good), label_words=["no", " "])),
        (DataError, "task.label_words", cfg(name="file", path=str(good), label_words=["a", "b", "c", "d"])),
        (DataError, "task.label_words", cfg(name="file", path=str(good), label_words=["a", "a"])),
        (DataError, "task.label_words", cfg(name="file", path=str(good))),
        (
            DataError,
            "task.label_words",
            cfg(name="sst2", path=str(good), template="{text} {label}", label_words=["x", "y", "z"]),
        ),
        (DataError, "task.path", cfg(name="sst2", path=str(good))),
        (DataError, "task.template", cfg(name="sst2", path=str(good), template="{sentence} {label}")),
        (
            DataError,
            "task.label_column",
            cfg(name="file", path=str(good), label_column="y", label_words=words),
        ),
        (
            DataError,
            "task.text_columns",
            cfg(name="file", path=str(good), text_columns=["body"], label_words=words),
        ),
    ]
    for exc_type, field, config in cases:
        expect_error(exc_type, field, load_task, config)


def test_unsupported_and_broken_files(tmp_path: Path) -> None:
    txt = tmp_path / "d.txt"
    txt.write_text("hello\n")
    assert ".txt" in expect_error(DataError, "task.path", load_task, cfg(name="file", path=str(txt)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 0}\n{oops\n')
    assert "line 2" in expect_error(DataError, "task.path", load_task, cfg(name="file", path=str(bad)))
    empty = tmp_path / "e.csv"
    empty.write_text("")
    expect_error(DataError, "task.path", load_task, cfg(name="file", path=str(empty)))
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": "x"}] * 5)
    expect_error(DataError, "task.label_column", load_task, cfg(name="file", path=str(one)))
    folder = tmp_path / "nofiles"
    folder.mkdir()
    expect_error(DataError, "task.path", load_task, cfg(name="rte", path=str(folder)))


# --- tokenizer checks, picker, direct construction -----------------------------------------------


def make_task(words: list[str]) -> Task:
    return Task(
        name="t",
        template="{text} It was {label}",
        label_words=words,
        label_names=[f"c{i}" for i in range(len(words))],
        kind="classification",
        metric="accuracy",
        train=[Example({"text": "fun"}, 0)],
        dev=[],
        test=[],
        description="",
    )


def test_check_label_words_with_tiny_tokenizer(tiny_tokenizer: Any) -> None:
    assert check_label_words(make_task(["terrible", "great"]), tiny_tokenizer) == []
    warnings = check_label_words(make_task(["very good", "very bad"]), tiny_tokenizer)
    assert any("spans 2 tokens" in w for w in warnings)
    assert any("share their first token" in w for w in warnings)
    assert any("unknown" in w for w in check_label_words(make_task(["great", "zyzzyva"]), tiny_tokenizer))
    copa = make_task([])
    copa.kind = "multiple_choice"
    assert check_label_words(copa, tiny_tokenizer) == []


def test_check_label_words_rejects_words_without_tokens() -> None:
    class Empty:
        unk_token_id = None

        def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
            return {"input_ids": [] if "ghost" in text else [1]}

    expect_error(DataError, "task.label_words", check_label_words, make_task(["great", "ghost"]), Empty())


def test_list_tasks_names_every_source() -> None:
    names = [name for name, _ in list_tasks()]
    assert names[:3] == ["rotten-tomatoes", "tweet-sentiment", "bbc-news"]
    assert set(BUILTIN_TEMPLATES) <= set(names) and names[-1] == "file"
    assert all(desc and "\n" not in desc for _, desc in list_tasks())


def test_directly_built_task_renders() -> None:
    task = make_task(["terrible", "great"])
    ex = task.train[0]
    assert task.render_full(ex, 1) == "fun It was great"
    assert task.num_classes == 2 and task.split_sizes() == {"train": 1, "dev": 0, "test": 0}


@pytest.mark.integration
def test_real_zoo_data_sets_load_with_default_prompts() -> None:
    for name in ("rotten-tomatoes", "tweet-sentiment", "bbc-news"):
        task = load_task(TaskConfig(name=name, n_train=50, n_dev=20, n_test=20))
        assert task.split_sizes() == {"train": 50, "dev": 20, "test": 20}
        ex = task.train[0]
        assert task.render_full(ex, ex.label).endswith(task.options(ex)[ex.label])
