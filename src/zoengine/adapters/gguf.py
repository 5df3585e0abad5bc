"""The merged model as one GGUF file for llama.cpp, Ollama and LM Studio (Llama family).

Written with the ``gguf`` package (llama.cpp's own writer): tensor names come from its name map
(``gguf.get_tensor_name_map``), metadata keys from its writer methods. What llama.cpp's converter
(``convert_hf_to_gguf.py``, ``LlamaModel``) does and this does too:

- q_proj / k_proj rows are reordered per head so that llama.cpp's rope (adjacent pairs) sees what
  transformers' rotate_half (split halves) did; transformers reverses it when it reads the file;
- with tied embeddings no ``output.weight`` is written (llama.cpp then uses ``token_embd``);
- 1-D tensors (norms) stay float32; 2-D ones are f32, f16 or q8_0 (q8_0 needs rows divisible by
  32, else f16);
- the tokenizer goes in as llama.cpp's "gpt2" (byte-level BPE) vocabulary: tokens by id with
  their types (normal / control / user-defined), merges, special ids, add-BOS and chat template
  (read by ``gguf.SpecialVocab`` from the saved tokenizer), and ``tokenizer.ggml.pre`` named after
  the pre-tokenizer's shape (llama.cpp applies the same split only when it knows the name).

Anything else (other architectures, rope scaling, sentencepiece vocabularies) is refused in one
line rather than written as a file that loads and answers wrong.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from zoengine.errors import AdapterError

GGUF_TYPES = ("f32", "f16", "q8_0")
LLAMA_FAMILY = ("llama",)  # HF model_type values written as llama.cpp's "llama" architecture
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _fail(message: str) -> AdapterError:
    return AdapterError(message, field="export.format")


def gguf_file_name(gguf_type: str) -> str:
    return f"model-{gguf_type}.gguf"


def tokenizer_pre(tokenizer: Any) -> str:
    """llama.cpp's name for a byte-level BPE tokenizer's pre-tokenizer, from its shape in
    tokenizer.json: gpt-2 (ByteLevel with GPT-2's regex), smollm (single digits, then that),
    llama-bpe (Llama 3's split regex, then ByteLevel)."""
    pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and (parts[0].get("pattern") or {}).get("Regex") == _LLAMA3_SPLIT:
        return "llama-bpe"
    raise _fail(
        f"the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) has no llama.cpp name "
        "this export knows (gpt-2, smollm, llama-bpe): use merged and llama.cpp's convert_hf_to_gguf.py"
    )


def _add_tokenizer(writer: Any, tokenizer: Any, vocab_size: int, pre: str | None) -> None:
    import gguf

    if tokenizer is None or not hasattr(tokenizer, "backend_tokenizer"):
        raise _fail("a GGUF needs the base model's (fast) tokenizer, and this run has none")
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model_type = (spec.get("model") or {}).get("type")
    byte_level = "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) or "ByteLevel" in json.dumps(spec.get("decoder"))
    if model_type != "BPE" or not byte_level:
        raise _fail(
            f"GGUF export writes byte-level BPE (gpt2-style) vocabularies; this tokenizer is "
            f"{'byte-fallback ' if model_type == 'BPE' else ''}{model_type}: use merged and llama.cpp's converter"
        )
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise _fail(f"the tokenizer has ids up to {max(vocab.values())}, beyond the model's {vocab_size} embeddings")
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in by_id:  # embedding rows without a token (vocab padded to a multiple)
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.USER_DEFINED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre or tokenizer_pre(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory(prefix="zoengine-gguf-tok.") as tmp:
        tokenizer.save_pretrained(tmp)  # merges, special ids, add_bos, chat template as saved files
        special = gguf.SpecialVocab(tmp, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise _fail("the tokenizer has no BPE merges to write")
    special.add_to_gguf(writer, quiet=True)


def _permute_rows(w: Tensor, heads: int) -> Tensor:
    """Per head, interleave the two halves of the rows (split-half rope -> adjacent pairs)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise _fail(f"rope scaling {kind!r} is not written by this GGUF export: use merged and llama.cpp's converter")
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    return float(theta if theta is not None else 10000.0)


def _array(t: Tensor, gguf_type: str) -> tuple[np.ndarray, Any]:
    """(data, raw_dtype) for GGUFWriter.add_tensor."""
    import gguf

    data = t.detach().to("cpu", torch.float32).contiguous().numpy()
    if data.ndim < 2 or gguf_type == "f32":
        return data, None
    if gguf_type == "q8_0" and data.shape[-1] % 32 == 0:
        kind = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data, kind), kind
    return data.astype(np.float16), None


def write_gguf(
    model: nn.Module,
    state_dict: dict[str, Tensor],
    out_dir: Path,
    tokenizer: Any,
    gguf_type: str,
    base_id: str,
    base_hash: str,
    pre: str | None = None,
) -> Path:
    """Write ``state_dict`` (the merged weights of ``model``) as ``out_dir/model-<type>.gguf``,
    plus a Modelfile for ``ollama create``; return the GGUF's path."""
    import gguf

    if gguf_type not in GGUF_TYPES:
        raise AdapterError(f"must be one of {', '.join(GGUF_TYPES)} (got {gguf_type!r})", field="--gguf-type")
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in LLAMA_FAMILY or not type(model).__name__.endswith("ForCausalLM"):
        raise _fail(
            f"GGUF export maps the Llama family ({', '.join(LLAMA_FAMILY)}); this model is {model_type or type(model).__name__}: "
            "use merged and llama.cpp's convert_hf_to_gguf.py"
        )
    assert config is not None
    n_layers, n_head = int(config.num_hidden_layers), int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_head)
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise _fail("Llama models with attention/MLP biases are not written by this GGUF export: use merged")
    rope_theta = _rope_theta(config)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[gguf_type]

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / gguf_file_name(gguf_type)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(f"{Path(base_id).name} (zoengine fine-tune)")
    writer.add_string("general.source.base_model", base_id)
    writer.add_string("zoengine.base_model_hash", base_hash)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(file_type)
    if gguf_type == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, int(config.vocab_size), pre)

    tied = bool(getattr(config, "tie_word_embeddings", False))
    for key, tensor in state_dict.items():
        if tied and key == "lm_head.weight":
            continue
        if key.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise _fail(f"no llama.cpp name for tensor {key!r}: this model is not a plain Llama")
        if key.endswith("q_proj.weight"):
            tensor = _permute_rows(tensor, n_head)
        elif key.endswith("k_proj.weight"):
            tensor = _permute_rows(tensor, n_kv)
        data, raw_dtype = _array(tensor, gguf_type)
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (out_dir / "Modelfile").write_text(f"FROM ./{path.name}\n", encoding="utf-8")  # ollama create NAME -f Modelfile
    (out_dir / "zoengine_export.json").write_text(
        json.dumps(
            {"format": "gguf", "gguf_type": gguf_type, "file": path.name, "base_model_id": base_id, "base_model_hash": base_hash},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return path
