"""Shared frozen prefix: ZO steps with the prefix cache give the same losses and tensors as without
(float32), the cache starts at the first trainable block, never outlives its batch, and stays off
where it would be wrong (trainable embeddings, autograd). Plus ``adapter.layers`` selections."""

from __future__ import annotations

import gc

import pytest
import torch

from zoengine.adapters import apply_adapter
from zoengine.config import AdapterConfig, OptimizerConfig
from zoengine.errors import ConfigError
from zoengine.layers import first_trainable_layer, layer_stack, parse_layers
from zoengine.models import LoadedModel
from zoengine.objectives import Objective
from zoengine.optim import build_optimizer
from zoengine.prefix import PrefixCache, step_cost_ratio


class FakeTask:
    label_words = ["terrible", "great"]
    label_names = ["negative", "positive"]
    kind = "classification"

    def prompt(self, ex):
        return f"{ex.fields['text']} it was"

    def suffix(self, ex):
        return "."


class Ex:
    def __init__(self, text: str, label: int) -> None:
        self.fields, self.label = {"text": text}, label


EXAMPLES = [
    Ex("the movie was fun", 1),
    Ex("boring", 0),
    Ex("a really very good film with great acting and music", 1),
    Ex("the plot was bad and the acting awful", 0),
]


def _loaded(model, tok, kind):
    return LoadedModel(model, tok, kind, "tiny", "local", torch.device("cpu"), torch.float32)


def tiny_llama4(vocab: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def tiny_bert4(vocab: int, seed: int = 0):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return BertForMaskedLM(cfg).eval()


# (model builder, model kind, adapter config, expected first trainable block of 4)
CASES = [
    ("llama", "causal_lm", AdapterConfig(method="lora", layers="top:2", options={"r": 2}), 2),
    ("llama", "causal_lm", AdapterConfig(method="tt", layers="3"), 3),
    ("llama", "causal_lm", AdapterConfig(method="subset", targets=["model.norm"]), 4),
    ("llama", "causal_lm", AdapterConfig(method="sora", layers="1-3", options={"r": 2}), 1),
    ("llama", "causal_lm", AdapterConfig(method="lora", options={"r": 2}), 0),  # all blocks: no sharing
    ("llama", "causal_lm", AdapterConfig(method="full"), 0),  # embeddings train: no sharing
    ("bert", "masked_lm", AdapterConfig(method="lora", layers="top:2", options={"r": 2}), 2),
    ("bert", "masked_lm", AdapterConfig(method="bitfit", layers="top:1"), 3),
]


def _setup(kind_name: str, kind: str, acfg: AdapterConfig, tok, share: bool):
    model = (tiny_llama4 if kind_name == "llama" else tiny_bert4)(len(tok))
    obj = Objective(_loaded(model, tok, kind), FakeTask(), max_length=32)
    torch.manual_seed(0)
    handle = apply_adapter(model, acfg, seed=0)
    obj.share_prefix(share)
    return obj, handle


def _steps(obj: Objective, handle, optimizer: str, q: int, n_steps: int = 3) -> tuple[list[float], dict]:
    ocfg = OptimizerConfig(name=optimizer, lr=1e-2, eps=1e-3, options={"q": q} if q > 1 else {})
    opt = build_optimizer(ocfg, handle.param_groups(0.0), seed=3, total_steps=10, steps_per_epoch=2)
    losses = []
    for step in range(n_steps):
        batch = obj.make_batch(EXAMPLES[step % 2 :])
        with torch.no_grad():
            losses.append(float(opt.step(lambda b=batch: obj.loss(b))))
    return losses, {k: v.clone() for k, v in handle.trainable_state_dict().items()}


@pytest.mark.parametrize(("kind_name", "kind", "acfg", "start"), CASES, ids=lambda v: getattr(v, "method", v))
def test_shared_prefix_is_exact_and_starts_at_the_first_trainable_block(
    tiny_tokenizer, kind_name, kind, acfg, start
) -> None:
    ref_obj, ref_handle = _setup(kind_name, kind, acfg, tiny_tokenizer, share=False)
    obj, handle = _setup(kind_name, kind, acfg, tiny_tokenizer, share=True)
    assert obj.prefix is not None and obj.prefix.start == start and obj.prefix.active == (start > 0)
    for optimizer, q in (("mezo_sgd", 1), ("mezo_sgd", 3)):
        ref_losses, ref_state = _steps(ref_obj, ref_handle, optimizer, q)
        losses, state = _steps(obj, handle, optimizer, q)
        assert losses == pytest.approx(ref_losses, abs=1e-6, rel=0)
        for name, tensor in ref_state.items():
            torch.testing.assert_close(state[name], tensor, atol=1e-6, rtol=0)
    if start > 0:
        # 2 steps of 2 forwards + 3 steps of 6 (+ MeZO's loss at the restored point where it takes one):
        # one recording forward per batch, every other forward replays the prefix
        assert obj.prefix.misses == 6 and obj.prefix.hits > obj.prefix.misses
    else:
        assert obj.prefix.hits == 0


def test_the_cache_never_outlives_its_batch_and_is_keyed_by_the_batch_object(tiny_tokenizer) -> None:
    obj, _ = _setup(
        "llama", "causal_lm", AdapterConfig(method="subset", targets=["model.norm"]), tiny_tokenizer, True
    )
    prefix = obj.prefix
    assert prefix is not None
    with torch.no_grad():
        batch = obj.make_batch(EXAMPLES)
        first = obj.option_logits(batch)
        assert prefix.holds(batch) and (prefix.misses, prefix.hits) == (1, 0)
        again = obj.option_logits(batch)
        torch.testing.assert_close(again, first, atol=0, rtol=0)
        assert prefix.hits == 1
        same_content = obj.make_batch(EXAMPLES)  # another batch object: recorded anew, never reused
        obj.option_logits(same_content)
        assert prefix.misses == 2 and not prefix.holds(batch) and prefix.holds(same_content)
    del batch, same_content
    gc.collect()
    assert prefix._output is None and prefix._batch is None  # dropped with its batch
    # while autograd records (first-order steps), the cache stays out of the way
    batch = obj.make_batch(EXAMPLES)
    with torch.enable_grad():
        obj.option_logits(batch)
        obj.option_logits(batch)
    assert (prefix.misses, prefix.hits) == (2, 1) and not prefix.holds(batch)


def test_a_perturbed_prefix_is_never_replayed(tiny_tokenizer) -> None:
    """If a block below the recorded boundary changed, replaying would be wrong: the boundary is
    computed from what is trainable, so a trainable block 0 turns sharing off."""
    model = tiny_llama4(len(tiny_tokenizer))
    model.requires_grad_(False)
    model.model.layers[0].mlp.down_proj.weight.requires_grad_(True)
    assert first_trainable_layer(model) == 0 and not PrefixCache(model).active
    model.model.layers[0].mlp.down_proj.weight.requires_grad_(False)
    model.lm_head.weight.requires_grad_(True)  # tied to the embeddings: before the stack
    assert first_trainable_layer(model) == 0
    model.lm_head.weight.requires_grad_(False)
    model.model.norm.weight.requires_grad_(True)
    assert first_trainable_layer(model) == 4


def test_layer_stack_is_found_structurally(tiny_tokenizer) -> None:
    name, stack = layer_stack(tiny_llama4(len(tiny_tokenizer)))
    assert name == "model.layers" and len(stack) == 4
    name, stack = layer_stack(tiny_bert4(len(tiny_tokenizer)))
    assert name == "bert.encoder.layer" and len(stack) == 4


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("all", None),
        ("top:2", {2, 3}),
        ("bottom:1", {0}),
        ("1-2", {1, 2}),
        ("0,3", {0, 3}),
        ("0-1,3", {0, 1, 3}),
    ],
)
def test_layers_spec(spec, expected) -> None:
    assert parse_layers(spec, 4) == expected


@pytest.mark.parametrize("spec", ["top:0", "top:5", "4", "2-1", "x", "top:", "1-2-3"])
def test_bad_layers_spec_names_the_field(spec) -> None:
    with pytest.raises(ConfigError) as info:
        parse_layers(spec, 4)
    assert info.value.field == "adapter.layers"


def test_layers_restrict_the_adapted_modules(tiny_tokenizer) -> None:
    model = tiny_llama4(len(tiny_tokenizer))
    handle = apply_adapter(model, AdapterConfig(method="lora", layers="top:1", options={"r": 2}), seed=0)
    assert handle.targets and all(t.startswith("model.layers.3.") for t in handle.targets)
    with pytest.raises(ConfigError, match="full trains every block"):
        apply_adapter(tiny_llama4(len(tiny_tokenizer)), AdapterConfig(method="full", layers="top:1"), seed=0)


def test_step_cost_estimate() -> None:
    assert step_cost_ratio(0, 30, 1) == 1.0
    # final-norm only: one full forward + one head-only forward of two
    assert step_cost_ratio(30, 30, 1, head_share=0.05) == pytest.approx((1 + 0.05) / 2)
    # top half with Q = 8: (1 + 15 · (0.05 + 0.95/2)) / 16
    assert step_cost_ratio(15, 30, 8, head_share=0.05) == pytest.approx((1 + 15 * 0.525) / 16)


def test_evaluation_tokenizes_once_and_reuses_the_pinned_prefix(tiny_tokenizer, monkeypatch) -> None:
    acfg = AdapterConfig(method="lora", layers="top:1", options={"r": 2})
    ref, _ = _setup("llama", "causal_lm", acfg, tiny_tokenizer, share=False)
    obj, handle = _setup("llama", "causal_lm", acfg, tiny_tokenizer, share=True)
    made: list[int] = []
    real = obj.make_batch
    monkeypatch.setattr(obj, "make_batch", lambda exs: made.append(len(exs)) or real(exs))
    expected = ref.evaluate(EXAMPLES, batch_size=3)
    assert obj.evaluate(EXAMPLES, batch_size=3) == pytest.approx(expected, abs=1e-6)
    assert made == [3, 1] and obj.prefix.misses == 2 and obj.prefix.pinned_bytes > 0
    # training moves the adapter (top block only); a second evaluation tokenizes nothing and runs
    # only the top block, and still equals the uncached model's evaluation
    with torch.no_grad():
        for name, p in handle.named_trainable():
            p.add_(0.05)
            dict(ref.loaded.model.named_parameters())[name].add_(0.05)
    assert obj.evaluate(EXAMPLES, batch_size=3) == pytest.approx(ref.evaluate(EXAMPLES, batch_size=3), abs=1e-6)
    assert made == [3, 1] and obj.prefix.misses == 2 and obj.prefix.hits == 2
    losses, correct = obj.example_losses(EXAMPLES, batch_size=3)
    ref_losses, ref_correct = ref.example_losses(EXAMPLES, batch_size=3)
    torch.testing.assert_close(losses, ref_losses, atol=1e-6, rtol=0)
    assert made == [3, 1] and obj.prefix.hits == 4
    # the pinned outputs go with their batches
    obj._eval_batches.clear()
    gc.collect()
    assert obj.prefix.pinned_bytes == 0 and not obj.prefix._pinned


def test_the_tuner_runs_the_shared_prefix_of_each_batch_once(
    tiny_llama_dir, sentiment_csv, monkeypatch, tmp_path
) -> None:
    """Every candidate replays the same batches: their prefixes are pinned, so the frozen blocks run
    once per batch for the whole sweep, not once per candidate and query."""
    from zoengine.config import RunConfig
    from zoengine.tune import TuneError, tune

    monkeypatch.setenv("ZOENGINE_CACHE", str(tmp_path / "cache"))
    made: list[PrefixCache] = []
    original = PrefixCache.__init__

    def recording_init(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(PrefixCache, "__init__", recording_init)
    cfg = RunConfig()
    cfg.model.name = str(tiny_llama_dir)
    cfg.task.name, cfg.task.path = "file", str(sentiment_csv)
    cfg.task.template, cfg.task.label_words = "{text} it was", ["great", "terrible"]
    cfg.task.n_train, cfg.task.n_dev, cfg.task.n_test = 64, 16, 8
    cfg.adapter.method, cfg.adapter.targets = "subset", ["model.norm"]
    cfg.run.batch_size = 8
    try:
        tune(cfg, steps=4, lrs=[1e-3, 1e-2], dev_examples=16, use_cache=False)
    except TuneError:
        pass  # a 4-step sweep may not separate the candidates; the forwards ran all the same
    (prefix,) = made
    assert prefix.active and prefix.start == 2
    assert prefix.misses == 4 + 1  # 4 training batches + 1 dev batch, each run through the blocks once
    assert prefix.hits == 2 * 4 * 2 - 4 + 2  # every other forward (2 candidates · 4 steps · ±, dev after each)
