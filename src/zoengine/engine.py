"""The run loop: one ``Run`` trains one config into one run directory, headless or in a thread.

    run = Run(RunConfig.load("run.toml"))
    run.start()                      # background thread; or run.run() to block
    event = run.events.get()         # StepLogged, EvalDone, StatusChanged, ...
    run.pause(); run.resume(); run.stop(save=True); run.join()

Run directory (every file written atomically; readable after a kill):
    config.toml            the config snapshot
    metrics.jsonl          every event, one JSON line each
    state.json             status, step, best dev accuracy, final test result
    checkpoints/last/      trainable tensors + optimizer/scheduler/counter state (resume point)
    checkpoints/best/      trainable tensors of the best dev accuracy
    exports/               what `zoengine export` wrote

Data order is a pure function of (seed, step), and the optimizer's generator is checkpointed,
so a resumed run repeats the uninterrupted run's losses exactly (CPU, float32).
"""

from __future__ import annotations

import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from zoengine.config import RunConfig
from zoengine.errors import CheckpointError, ZOError
from zoengine.events import (
    CheckpointSaved,
    EvalDone,
    Event,
    LogMessage,
    RunInfo,
    StatusChanged,
    StepLogged,
)
from zoengine.io import append_jsonl, atomic_dir, atomic_write_json, read_jsonl
from zoengine.paths import runs_home

log = logging.getLogger(__name__)

EVENT_QUEUE_SIZE = 10_000
TERMINAL = ("finished", "stopped", "failed")


class _StopRequested(Exception):
    """Raised inside the loss closure so a stop takes effect within one query."""


def new_run_dir(cfg: RunConfig) -> Path:
    if cfg.run.output_dir:
        return Path(cfg.run.output_dir).expanduser()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = (
        cfg.run.name
        or f"{Path(cfg.model.name).name}-{cfg.task.name}-{cfg.adapter.method}-{cfg.optimizer.name}"
    )
    base = re.sub(r"[^\w.\-]+", "_", base)
    path = runs_home() / f"{stamp}-{base}"
    n = 1
    while path.exists():
        n += 1
        path = runs_home() / f"{stamp}-{base}-{n}"
    return path


def batch_indices(step: int, n_train: int, batch_size: int, seed: int) -> list[int]:
    """Examples of ``step``: epoch-wise seeded permutation, last batch of an epoch may be short."""
    steps_per_epoch = math.ceil(n_train / batch_size)
    epoch, within = divmod(step, steps_per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n_train, generator=gen)
    return perm[within * batch_size : (within + 1) * batch_size].tolist()


class Run:
    """Train ``config`` into ``run_dir``; controllable from another thread."""

    def __init__(self, config: RunConfig, run_dir: Path | None = None, *, resume: bool = False) -> None:
        self.config = config.validate()
        self.run_dir = Path(run_dir) if run_dir is not None else new_run_dir(config)
        self.resuming = resume
        self.events: queue.Queue[Event] = queue.Queue(maxsize=EVENT_QUEUE_SIZE)
        self.status = "created"
        self.error: str | None = None
        self.error_is_user = False  # a ZOError (bad input) rather than a crash
        self.step = 0
        self._saved_step: int | None = None  # step of checkpoints/last, so the end does not rewrite it
        self.best_dev_accuracy: float | None = None
        self.test_result: dict[str, float] | None = None
        self._subscribers: list[Callable[[Event], None]] = []
        self._stop = threading.Event()
        self._save_on_stop = True
        self._running = threading.Event()
        self._running.set()
        self._eval_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # populated by _setup
        self.loaded: Any = None
        self.task: Any = None
        self.objective: Any = None
        self.handle: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.forward_passes = 0
        self.tokens = 0

    # --- control (any thread) ---------------------------------------------------------------------

    @classmethod
    def resume_from(cls, run_dir: str | Path) -> Run:
        run_dir = Path(run_dir)
        cfg_path = run_dir / "config.toml"
        if not cfg_path.exists():
            raise CheckpointError(f"not a run directory (no config.toml): {run_dir}", field="run")
        if not (run_dir / "checkpoints" / "last" / "state.pt").exists():
            raise CheckpointError(f"run has no checkpoint to resume from: {run_dir}", field="run")
        return cls(RunConfig.load(cfg_path), run_dir, resume=True)

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` from the engine thread for every event (keep it cheap)."""
        self._subscribers.append(callback)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("run already started")
        self._thread = threading.Thread(
            target=self.run, name=f"zoengine-run-{self.run_dir.name}", daemon=True
        )
        self._thread.start()

    def pause(self) -> None:
        if self.status == "running":
            self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def request_eval(self) -> None:
        self._eval_requested.set()

    def stop(self, save: bool = True) -> None:
        self._save_on_stop = save
        self._stop.set()
        self._running.set()  # wake a paused loop so it can exit

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- events --------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        """Log to metrics.jsonl, offer to the bounded queue (drop the oldest when full), notify."""
        if self.run_dir.exists():
            append_jsonl(self.run_dir / "metrics.jsonl", event.to_record())
        while True:
            try:
                self.events.put_nowait(event)
                break
            except queue.Full:
                try:
                    self.events.get_nowait()
                except queue.Empty:
                    pass
        for cb in self._subscribers:
            try:
                cb(event)
            except Exception:  # a broken subscriber must not kill training
                log.exception("event subscriber failed")

    def _set_status(self, status: str, message: str = "") -> None:
        self.status = status
        self._emit(StatusChanged(status=status, message=message))
        self._write_state()

    def _log(self, text: str, level: str = "info") -> None:
        getattr(log, "warning" if level == "warning" else "info")(text)
        self._emit(LogMessage(level=level, text=text))

    def _write_state(self) -> None:
        if not self.run_dir.exists():
            return
        atomic_write_json(
            self.run_dir / "state.json",
            {
                "status": self.status,
                "step": self.step,
                "total_steps": self.config.run.steps,
                "best_dev_accuracy": self.best_dev_accuracy,
                "test": self.test_result,
                "error": self.error,
                "updated": time.time(),
            },
        )

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Execute the whole run in the calling thread. Errors end as status 'failed'."""
        try:
            self._prepare_dir()
            self._set_status("loading", "loading model and data")
            self._setup()
            if self._stop.is_set():
                self._set_status("stopped", "stopped before training")
                return
            self._train()
        except ZOError as exc:
            self.error = exc.one_line()
            self.error_is_user = True
            self._log(self.error, "error")
            self._set_status("failed", self.error)
        except Exception as exc:  # report, never hang the caller
            log.exception("run failed")
            self.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self._log(self.error, "error")
            self._set_status("failed", self.error)

    def _prepare_dir(self) -> None:
        if self.resuming:
            return
        if (self.run_dir / "config.toml").exists():
            raise CheckpointError(
                f"run directory already holds a run: {self.run_dir} (use resume)", field="run.output_dir"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config.save(self.run_dir / "config.toml")

    def _setup(self) -> None:
        from zoengine.adapters import apply_adapter
        from zoengine.models import load_model
        from zoengine.objectives import Objective
        from zoengine.optim import build_optimizer, make_lr_lambda
        from zoengine.tasks import check_label_words, load_task

        cfg = self.config
        torch.manual_seed(cfg.run.seed)  # adapter inits; perturbations use the optimizer's own generator
        self.task = load_task(cfg.task)
        if not self.task.train:
            raise ZOError("the training split is empty", field="task.n_train")
        self.loaded = load_model(cfg.model, label_texts=self.task.label_words or self.task.label_names)
        if self.loaded.kind != "classifier":
            for w in check_label_words(self.task, self.loaded.tokenizer) or []:
                self._log(w, "warning")
        self.objective = Objective(self.loaded, self.task, cfg.model.max_length)
        for w in self.objective.warnings:
            self._log(w, "warning")
        self.handle = apply_adapter(self.loaded.model, cfg.adapter, seed=cfg.run.seed)
        groups = self.handle.param_groups(cfg.optimizer.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.task.train) / cfg.run.batch_size)
        self.optimizer = build_optimizer(
            cfg.optimizer,
            groups,
            seed=cfg.run.seed,
            total_steps=cfg.run.steps,
            steps_per_epoch=self.steps_per_epoch,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, make_lr_lambda(cfg.optimizer, cfg.run.steps)
        )
        if self.resuming:
            self._load_checkpoint()
        self._emit(
            RunInfo(
                model=cfg.model.name,
                total_params=self.loaded.num_params(),
                trainable_params=self.handle.num_trainable(),
                n_train=len(self.task.train),
                n_dev=len(self.task.dev),
                n_test=len(self.task.test),
                total_steps=cfg.run.steps,
                details={
                    "kind": self.loaded.kind,
                    "device": str(self.loaded.device),
                    "dtype": str(self.loaded.dtype).removeprefix("torch."),
                    "steps_per_epoch": self.steps_per_epoch,
                    "adapter_targets": len(self.handle.targets),
                    "resumed_at": self.step if self.resuming else None,
                },
            )
        )
        self._log(
            f"{cfg.model.name} ({self.loaded.kind}, {self.loaded.num_params():,} params, "
            f"{self.handle.num_trainable():,} trainable) on {self.loaded.device}; "
            f"train/dev/test = {len(self.task.train)}/{len(self.task.dev)}/{len(self.task.test)}"
        )

    def _evaluate(self, split: str) -> EvalDone:
        examples = getattr(self.task, split)
        t0 = time.perf_counter()
        loss, acc = self.objective.evaluate(examples, self.config.run.eval_batch_size)
        event = EvalDone(
            step=self.step,
            split=split,
            loss=loss,
            accuracy=acc,
            examples=len(examples),
            seconds=time.perf_counter() - t0,
        )
        self._emit(event)
        return event

    def _dev_eval_and_track(self) -> None:
        if not self.task.dev:
            return
        ev = self._evaluate("dev")
        if not math.isnan(ev.accuracy) and (
            self.best_dev_accuracy is None or ev.accuracy > self.best_dev_accuracy
        ):
            self.best_dev_accuracy = ev.accuracy
            if self.step > 0:
                self._save_best()
        self._write_state()

    def _train(self) -> None:
        run = self.config.run
        self._set_status("running", "resumed" if self.resuming else "training")
        # 1. zero-shot evaluation (what the model does before any update)
        if run.zero_shot_eval and self.step == 0:
            self._dev_eval_and_track()
        while self.step < run.steps:
            # 2. pause / stop
            if not self._running.is_set():
                self._set_status("paused")
                self._running.wait()
                if not self._stop.is_set():
                    self._set_status("running", "resumed")
            if self._stop.is_set():
                break
            # 3. one optimizer step on the step's batch
            try:
                self._one_step()
            except _StopRequested:
                break
            # 4. evaluation and checkpoints
            if self._eval_requested.is_set() or (run.eval_every and self.step % run.eval_every == 0):
                self._eval_requested.clear()
                self._dev_eval_and_track()
            if run.checkpoint_every and self.step % run.checkpoint_every == 0:
                self._save_checkpoint()
        self._finish()

    def _one_step(self) -> None:
        cfg = self.config
        idx = batch_indices(self.step, len(self.task.train), cfg.run.batch_size, cfg.run.seed)
        batch = self.objective.make_batch([self.task.train[i] for i in idx])
        opt, objective = self.optimizer, self.objective

        def closure() -> torch.Tensor:
            if self._stop.is_set():
                raise _StopRequested
            if opt.uses_backward:
                opt.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    loss = objective.loss(batch)
                loss.backward()
                return loss.detach()
            with torch.no_grad():
                return objective.loss(batch)

        t0 = time.perf_counter()
        try:
            loss = opt.step(closure)
        except _StopRequested:
            self._log(f"stop requested during step {self.step + 1}; the partial step was discarded")
            raise
        seconds = time.perf_counter() - t0
        self.step += 1
        stats = dict(opt.last_stats)
        lr = float(stats.pop("lr", opt.param_groups[0]["lr"]))
        self.scheduler.step()
        self.handle.after_step(self.step, lr)
        queries = int(stats.pop("queries", 1))
        self.forward_passes += int(stats.pop("forward_passes", 2 * queries))
        self.tokens += batch.tokens * max(1, 2 * queries if not opt.uses_backward else 1)
        extra = {k: v for k, v in stats.items() if k not in ("projected_grads",)}
        extra.update(self.handle.stats())
        self._emit(
            StepLogged(
                step=self.step,
                loss=float(loss),
                lr=lr,
                projected_grads=[float(g) for g in stats.get("projected_grads", [])],
                queries=queries,
                forward_passes=self.forward_passes,
                tokens=self.tokens,
                seconds=seconds,
                extra=extra,
            )
        )

    def _finish(self) -> None:
        stopped = self._stop.is_set()
        if stopped and not self._save_on_stop:
            self._set_status("stopped", "stopped without saving")
            return
        if self._saved_step != self.step:
            self._save_checkpoint()
        if stopped:
            self._set_status(
                "stopped", f"stopped at step {self.step}; resume with `zoengine resume {self.run_dir}`"
            )
            return
        # final: dev eval (if not just done), then test on the best checkpoint
        if self.task.dev and not (self.config.run.eval_every and self.step % self.config.run.eval_every == 0):
            self._dev_eval_and_track()
        best = self.run_dir / "checkpoints" / "best" / "trainable.safetensors"
        if best.exists():
            from safetensors.torch import load_file

            self.handle.load_trainable_state_dict(load_file(best))
            self._log(
                f"test evaluation uses the best dev checkpoint (dev accuracy {self.best_dev_accuracy:.4f})"
            )
        if self.task.test:
            ev = self._evaluate("test")
            self.test_result = {"loss": ev.loss, "accuracy": ev.accuracy, "examples": ev.examples}
        self._set_status("finished", f"finished {self.step} steps")

    # --- checkpoints -----------------------------------------------------------------------------

    def _trainable_cpu(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu").contiguous() for k, v in self.handle.trainable_state_dict().items()}

    def _save_checkpoint(self) -> None:
        from safetensors.torch import save_file

        target = self.run_dir / "checkpoints" / "last"
        with atomic_dir(target) as tmp:
            save_file(self._trainable_cpu(), str(tmp / "trainable.safetensors"), metadata={"format": "pt"})
            torch.save(
                {
                    "step": self.step,
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "forward_passes": self.forward_passes,
                    "tokens": self.tokens,
                    "best_dev_accuracy": self.best_dev_accuracy,
                    "torch_rng": torch.get_rng_state(),
                },
                tmp / "state.pt",
            )
        self._saved_step = self.step
        self._write_state()
        self._emit(CheckpointSaved(step=self.step, path=str(target)))

    def _save_best(self) -> None:
        from safetensors.torch import save_file

        target = self.run_dir / "checkpoints" / "best"
        with atomic_dir(target) as tmp:
            save_file(self._trainable_cpu(), str(tmp / "trainable.safetensors"), metadata={"format": "pt"})
            atomic_write_json(tmp / "best.json", {"step": self.step, "dev_accuracy": self.best_dev_accuracy})
        self._emit(CheckpointSaved(step=self.step, path=str(target), best=True))

    def _load_checkpoint(self) -> None:
        from safetensors.torch import load_file

        ckpt = self.run_dir / "checkpoints" / "last"
        try:
            state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
            self.handle.load_trainable_state_dict(load_file(ckpt / "trainable.safetensors"))
        except (OSError, RuntimeError, KeyError) as exc:
            raise CheckpointError(
                f"cannot read checkpoint {ckpt}: {exc}".splitlines()[0], field="run"
            ) from exc
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.forward_passes = int(state["forward_passes"])
        self.tokens = int(state["tokens"])
        self.best_dev_accuracy = state["best_dev_accuracy"]
        torch.set_rng_state(state["torch_rng"])
        self._log(f"resumed from step {self.step}")

    # --- export ----------------------------------------------------------------------------------

    def export(self, fmt: str, dest: Path | None = None, *, checkpoint: str = "best") -> list[Path]:
        """Export the trained adapter; works on a finished run or a live one (between steps)."""
        from zoengine.exporting import export_run

        return export_run(self.run_dir, fmt, dest, checkpoint=checkpoint)


def read_state(run_dir: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((Path(run_dir) / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / "metrics.jsonl")
