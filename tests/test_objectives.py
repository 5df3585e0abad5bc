"""Objectives: padded batches score exactly like single unpadded examples, for each model kind."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from zoengine.errors import DataError
from zoengine.models import EncoderClassifier, LoadedModel
from zoengine.objectives import Objective


@dataclass(frozen=True)
class Ex:
    fields: dict
    label: int


@dataclass
class FakeTask:
    label_words: list[str] = field(default_factory=lambda: ["terrible", "great"])
    label_names: list[str] = field(default_factory=lambda: ["negative", "positive"])
    kind: str = "classification"
    choices: dict = field(default_factory=dict)

    def prompt(self, ex):
        return f"{ex.fields['text']} it was"

    def suffix(self, ex):
        return "."

    def options(self, ex):
        if self.kind == "multiple_choice":
            return [" " + c for c in ex.fields["choices"]]
        return [" " + w for w in self.label_words]


EXAMPLES = [
    Ex({"text": "the movie was fun"}, 1),
    Ex({"text": "boring"}, 0),
    Ex({"text": "a really very good film with great acting and music"}, 1),
]


def _loaded(model, tok, kind):
    return LoadedModel(model, tok, kind, "tiny", "local", torch.device("cpu"), torch.float32)


@torch.no_grad()
def test_causal_single_token_matches_unpadded_forward(tiny_llama, tiny_tokenizer):
    obj = Objective(_loaded(tiny_llama, tiny_tokenizer, "causal_lm"), FakeTask(), max_length=64)
    assert obj.single_token_ids is not None
    batch = obj.make_batch(EXAMPLES)
    scores = obj.option_logits(batch)
    word_ids = [tiny_tokenizer.convert_tokens_to_ids(w) for w in ("terrible", "great")]
    for i, ex in enumerate(EXAMPLES):
        ids = tiny_tokenizer(FakeTask().prompt(ex), return_tensors="pt")["input_ids"]
        ref = tiny_llama(input_ids=ids).logits[0, -1, word_ids]
        torch.testing.assert_close(scores[i], ref, atol=1e-5, rtol=1e-5)
    loss = obj.loss(batch)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(scores, batch.labels))


@torch.no_grad()
def test_causal_multi_token_options_mean_loglik(tiny_llama, tiny_tokenizer):
    task = FakeTask(kind="multiple_choice", label_words=[])
    exs = [
        Ex({"text": "the plot", "choices": ["very good", "bad"]}, 0),
        Ex({"text": "it", "choices": ["fun", "not so fun"]}, 1),
    ]
    obj = Objective(_loaded(tiny_llama, tiny_tokenizer, "causal_lm"), task, max_length=64)
    scores = obj.option_logits(obj.make_batch(exs))
    assert scores.shape == (2, 2)
    for i, ex in enumerate(exs):
        for j, choice in enumerate(ex.fields["choices"]):
            p = tiny_tokenizer(task.prompt(ex))["input_ids"]
            o = tiny_tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p + o])
            logp = torch.log_softmax(tiny_llama(input_ids=ids).logits[0].float(), -1)
            ref = torch.stack([logp[len(p) - 1 + k, o[k]] for k in range(len(o))]).mean()
            torch.testing.assert_close(scores[i, j], ref, atol=1e-5, rtol=1e-5)


def _tiny_bert_config(tokenizer):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )


@torch.no_grad()
def test_masked_lm_scores_label_words_at_mask(tiny_tokenizer):
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(_tiny_bert_config(tiny_tokenizer)).eval()
    obj = Objective(_loaded(model, tiny_tokenizer, "masked_lm"), FakeTask(), max_length=32)
    batch = obj.make_batch(EXAMPLES[:2])
    assert (batch.input_ids[torch.arange(2), batch.mask_positions] == tiny_tokenizer.mask_token_id).all()
    scores = obj.option_logits(batch)
    ex = EXAMPLES[1]
    text = f"{FakeTask().prompt(ex)} [MASK]."
    ids = tiny_tokenizer(text, return_tensors="pt")["input_ids"]
    ids = torch.cat([ids, torch.tensor([[tiny_tokenizer.sep_token_id]])], dim=1)  # as a BERT tokenizer ends
    pos = int((ids[0] == tiny_tokenizer.mask_token_id).nonzero()[0])
    word_ids = [tiny_tokenizer.convert_tokens_to_ids(w) for w in ("terrible", "great")]
    ref = model(input_ids=ids).logits[0, pos, word_ids]
    torch.testing.assert_close(scores[1], ref, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_encoder_classifier_head_starts_from_label_embeddings(tiny_tokenizer):
    from transformers import BertModel

    torch.manual_seed(0)
    enc = BertModel(_tiny_bert_config(tiny_tokenizer)).eval()
    clf = EncoderClassifier(enc, num_labels=2)
    clf.init_head_from_texts(tiny_tokenizer, ["terrible", "great"])
    # an input equal to a label text is classified as that label (cosine similarity 1 to itself)
    t = tiny_tokenizer(["great", "terrible"], padding=True, return_tensors="pt")
    logits = clf(t["input_ids"], t["attention_mask"])
    assert logits.argmax(-1).tolist() == [1, 0]
    obj = Objective(_loaded(clf, tiny_tokenizer, "classifier"), FakeTask(), max_length=32)
    loss, acc = obj.evaluate(EXAMPLES, batch_size=2)
    assert 0.0 <= acc <= 1.0 and loss > 0


def test_label_word_that_tokenizes_to_nothing(tiny_llama, tiny_tokenizer):
    with pytest.raises(DataError) as info:
        Objective(
            _loaded(tiny_llama, tiny_tokenizer, "causal_lm"), FakeTask(label_words=["   ", "great"]), 32
        )
    assert info.value.field == "task.label_words"


def test_multi_token_label_words_fall_back_to_mean_loglik(tiny_llama, tiny_tokenizer):
    obj = Objective(
        _loaded(tiny_llama, tiny_tokenizer, "causal_lm"), FakeTask(label_words=["very bad", "great"]), 32
    )
    assert obj.single_token_ids is None and obj.warnings
    loss, acc = obj.evaluate(EXAMPLES, batch_size=2)
    assert loss == loss and 0 <= acc <= 1


def test_evaluate_counts_correct(tiny_llama, tiny_tokenizer):
    obj = Objective(_loaded(tiny_llama, tiny_tokenizer, "causal_lm"), FakeTask(), max_length=64)
    scores = obj.option_logits(obj.make_batch(EXAMPLES))
    expected = (scores.argmax(-1) == torch.tensor([e.label for e in EXAMPLES])).float().mean().item()
    _, acc = obj.evaluate(EXAMPLES, batch_size=2)
    assert acc == pytest.approx(expected)
