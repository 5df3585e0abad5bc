"""Loss and accuracy of a prompt-based task for causal LMs, masked LMs and encoder classifiers.

Causal LM, classification with single-token label words (the fast path MeZO uses): one forward
of the prompt with ``logits_to_keep=1``, cross-entropy over the label words' logits at the last
position. Options of several tokens (or multiple choice such as COPA): each option is appended to
the prompt and scored by its mean token log-likelihood; cross-entropy over those scores.
Masked LM: the label words' logits at the mask token. Classifier: the head's logits.

Every loss is a mean over the batch in float32, so ZO projected gradients are comparable
across batch sizes.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from zoengine.errors import DataError
from zoengine.models import LoadedModel
from zoengine.prefix import PrefixCache

if TYPE_CHECKING:
    from zoengine.tasks import Example, Task


@dataclass
class Batch:
    """Tokenised inputs ready for one forward; ``labels`` index into the options."""

    input_ids: torch.Tensor  # (N, T)
    attention_mask: torch.Tensor  # (N, T)
    labels: torch.Tensor  # (B,)
    option_ids: torch.Tensor | None = None  # single-token path: (C,) token id per label word
    option_lengths: torch.Tensor | None = None  # multi-token path: (N,) option tokens at the end of each row
    num_options: int = 0  # multi-token path: rows per example
    mask_positions: torch.Tensor | None = None  # masked LM: (B,) index of the mask token

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


class Objective:
    """Turns task examples into batches and batches into a loss (no autograd needed)."""

    def __init__(self, loaded: LoadedModel, task: Task, max_length: int) -> None:
        self.loaded = loaded
        self.task = task
        self.max_length = max_length
        self.tok = loaded.tokenizer
        self.warnings: list[str] = []
        self.single_token_ids: torch.Tensor | None = None
        if loaded.kind in ("causal_lm", "masked_lm") and task.kind == "classification":
            self.single_token_ids = self._label_token_ids()
        self.prefix: PrefixCache | None = None
        # evaluation batches by the identity of their examples: a split is tokenized once per run
        # (the examples are held too, so an id is never reused while its entry exists)
        self._eval_batches: dict[tuple[int, ...], tuple[list[Example], Batch]] = {}
        self._prompt_cache: dict[int, tuple[Example, list[int]]] = {}

    def share_prefix(self, enabled: bool = True) -> PrefixCache | None:
        """Reuse the frozen blocks' output across the forwards of one batch (call after the adapter
        is applied: the first trainable block decides where the shared prefix ends)."""
        self.prefix = PrefixCache(self.loaded.model) if enabled else None
        return self.prefix

    # --- label words ----------------------------------------------------------------------------

    def _label_token_ids(self) -> torch.Tensor | None:
        """First token of each label word; None when the words need the multi-token path."""
        ids: list[list[int]] = []
        for word in self.task.label_words:
            toks = self.tok(" " + word.strip(), add_special_tokens=False)["input_ids"]
            if not toks:
                raise DataError(f"label word {word!r} tokenizes to nothing", field="task.label_words")
            ids.append(toks)
        firsts = [t[0] for t in ids]
        distinct = len(set(firsts)) == len(firsts)
        if all(len(t) == 1 for t in ids) and distinct:
            return torch.tensor(firsts)
        if self.loaded.kind == "masked_lm":
            if not distinct:
                raise DataError(
                    "label words share their first token; a masked LM scores one token",
                    field="task.label_words",
                )
            self.warnings.append(
                "some label words span several tokens; the masked LM scores their first token"
            )
            return torch.tensor(firsts)
        self.warnings.append("some label words span several tokens; scoring by mean option log-likelihood")
        return None

    # --- batching ---------------------------------------------------------------------------------

    def _prompt_ids(self, ex: Example, budget: int) -> list[int]:
        """The prompt's token ids, tokenized once per example (a training set is visited once per
        epoch; the example is held with its ids, so its id is never reused while cached)."""
        entry = self._prompt_cache.get(id(ex))
        if entry is None or entry[0] is not ex:
            entry = self._prompt_cache[id(ex)] = (ex, self.tok(self.task.prompt(ex))["input_ids"])
        ids = entry[1]
        return ids[-budget:] if budget > 0 else ids[-1:]  # keep the end: the label goes there

    def _pad_left(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        return ids, mask

    def make_batch(self, examples: list[Example]) -> Batch:
        if not examples:
            raise DataError("empty batch", field="task")
        labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)
        kind = self.loaded.kind
        if kind == "classifier":
            enc = self.tok(
                [self.task.prompt(ex) for ex in examples],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            return Batch(enc["input_ids"], enc["attention_mask"], labels)
        if kind == "masked_lm":
            rows, positions = [], []
            mask_id = self.tok.mask_token_id
            if mask_id is None:
                raise DataError("the model's tokenizer has no mask token", field="model.kind")
            for ex in examples:
                suffix = self.tok(self.task.suffix(ex), add_special_tokens=False)["input_ids"]
                prompt = self._prompt_ids(ex, self.max_length - 2 - len(suffix))
                cls_first = (
                    prompt[:1]
                    if self.tok.cls_token_id is not None and prompt[:1] == [self.tok.cls_token_id]
                    else []
                )
                body = prompt[len(cls_first) :]
                if self.tok.sep_token_id is not None and body[-1:] == [self.tok.sep_token_id]:
                    body = body[:-1]
                row = (
                    cls_first
                    + body
                    + [mask_id]
                    + suffix
                    + ([self.tok.sep_token_id] if self.tok.sep_token_id is not None else [])
                )
                rows.append(row)
            ids, mask = self._pad_right(rows)
            positions = (ids == mask_id).float().argmax(dim=1)
            return Batch(ids, mask, labels, option_ids=self.single_token_ids, mask_positions=positions)
        # causal LM
        if self.single_token_ids is not None:
            ids, mask = self._pad_left([self._prompt_ids(ex, self.max_length) for ex in examples])
            return Batch(ids, mask, labels, option_ids=self.single_token_ids)
        rows, lengths = [], []
        num_options = len(self.task.options(examples[0]))
        for ex in examples:
            opts = self.task.options(ex)
            if len(opts) != num_options:
                raise DataError("all examples must have the same number of options", field="task")
            for opt in opts:
                opt_ids = self.tok(opt, add_special_tokens=False)["input_ids"] or [self.tok.eos_token_id]
                opt_ids = opt_ids[: self.max_length // 2]
                rows.append(self._prompt_ids(ex, self.max_length - len(opt_ids)) + opt_ids)
                lengths.append(len(opt_ids))
        ids, mask = self._pad_left(rows)
        return Batch(ids, mask, labels, option_lengths=torch.tensor(lengths), num_options=num_options)

    def _pad_right(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids, mask

    # --- scoring -----------------------------------------------------------------------------------

    def option_logits(self, batch: Batch, pin: bool = False) -> torch.Tensor:
        """Scores (B, C) whose softmax is the model's belief over the options (``pin``: keep the
        shared prefix of this batch for as long as it lives, see ``zoengine.prefix``)."""
        with self.prefix.forward_for(batch, pin) if self.prefix is not None else nullcontext():
            return self._option_logits(batch)

    def eval_batch(self, examples: list[Example]) -> Batch:
        """The batch of ``examples``, tokenized on first use and kept for the objective's life."""
        key = tuple(id(ex) for ex in examples)
        entry = self._eval_batches.get(key)
        if entry is None:
            entry = self._eval_batches[key] = (list(examples), self.make_batch(examples))
        return entry[1]

    def _option_logits(self, batch: Batch) -> torch.Tensor:
        model, device = self.loaded.model, self.loaded.device
        ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        kind = self.loaded.kind
        if kind == "classifier":
            out = model(input_ids=ids, attention_mask=mask)
            logits = out if isinstance(out, torch.Tensor) else out.logits
            return logits.float()
        if kind == "masked_lm":
            logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
            rows = torch.arange(ids.shape[0], device=logits.device)
            at_mask = logits[rows, batch.mask_positions.to(logits.device)]  # (B, V)
            return at_mask[:, batch.option_ids.to(logits.device)].float()
        # left padding: positions count real tokens only, so a padded row equals its unpadded self
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        if batch.option_ids is not None:
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
            logits = out.logits[:, -1]  # (B, V)
            return logits[:, batch.option_ids.to(logits.device)].float()
        # multi-token options: mean log-likelihood of each option's tokens
        lengths = batch.option_lengths.to(device)
        keep = int(lengths.max()) + 1
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep)
        logits = out.logits.float()  # (N, keep, V)
        ids, lengths = ids.to(logits.device), lengths.to(logits.device)  # device_map: last device
        logp = torch.log_softmax(logits[:, :-1], dim=-1)  # position j predicts token at -keep+1+j
        targets = ids[:, -(keep - 1) :]  # (N, keep-1)
        tok_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (N, keep-1)
        pos = torch.arange(keep - 1, device=logits.device).unsqueeze(0)
        in_option = pos >= (keep - 1 - lengths).unsqueeze(1)
        scores = (tok_logp * in_option).sum(1) / lengths
        return scores.view(-1, batch.num_options)

    def loss(self, batch: Batch, pin: bool = False) -> torch.Tensor:
        """Mean cross-entropy of ``batch`` (``pin``: see ``option_logits``)."""
        logits = self.option_logits(batch, pin)
        return F.cross_entropy(logits, batch.labels.to(logits.device))

    @torch.no_grad()
    def example_losses(self, examples: list[Example], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example cross-entropy and correctness (float64, CPU): paired comparisons need more
        than the means."""
        losses, correct = [], []
        for start in range(0, len(examples), batch_size):
            batch = self.eval_batch(examples[start : start + batch_size])
            logits = self.option_logits(batch, pin=True)
            labels = batch.labels.to(logits.device)
            losses.append(F.cross_entropy(logits, labels, reduction="none").double().cpu())
            correct.append((logits.argmax(-1) == labels).double().cpu())
        if not losses:
            return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        return torch.cat(losses), torch.cat(correct)

    @torch.no_grad()
    def eval_sums(
        self, examples: list[Example], batch_size: int, should_stop=None, progress=None
    ) -> tuple[float, int, int]:
        """``(Σ loss, correct, seen)`` over ``examples``: sums, so shards evaluated by several ranks
        add up to the whole split's (``zoengine.distributed``). Each example's cross-entropy is
        summed in float64, so the split's sum does not depend on how it was cut into batches.

        ``progress(done, total)``, when given, is called with the batch count before the first
        batch and after each one (cheap callers only: it runs between forward passes)."""
        total_loss, correct, seen = 0.0, 0, 0
        total = -(-len(examples) // batch_size)
        for index, start in enumerate(range(0, len(examples), batch_size)):
            if progress is not None:
                progress(index, total)
            if should_stop is not None and should_stop():
                break
            batch = self.eval_batch(examples[start : start + batch_size])
            logits = self.option_logits(batch, pin=True)
            labels = batch.labels.to(logits.device)
            total_loss += float(F.cross_entropy(logits, labels, reduction="none").double().sum())
            correct += int((logits.argmax(-1) == labels).sum())
            seen += len(labels)
        if progress is not None and examples and seen == len(examples):
            progress(total, total)
        return total_loss, correct, seen

    @torch.no_grad()
    def evaluate(
        self, examples: list[Example], batch_size: int, should_stop=None, progress=None
    ) -> tuple[float, float]:
        """Mean loss and accuracy over ``examples`` (see ``eval_sums``); (nan, nan) for an empty list
        or when ``should_stop`` ended it before the first batch."""
        if not examples:
            return float("nan"), float("nan")
        total_loss, correct, seen = self.eval_sums(examples, batch_size, should_stop, progress)
        if seen == 0:
            return float("nan"), float("nan")
        return total_loss / seen, correct / seen


def warn_all(objective: Objective) -> None:
    for w in objective.warnings:
        warnings.warn(w, stacklevel=2)
