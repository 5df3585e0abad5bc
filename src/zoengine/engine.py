"""The run loop: one ``Run`` trains one config into one run directory, headless or in a thread.

    run = Run(RunConfig.load("run.toml"))
    run.start()                      # background thread; or run.run() to block
    event = run.events.get()         # StepLogged, EvalDone, StatusChanged, ...
    run.pause(); run.resume(); run.stop(save=True); run.join()

Run directory (every file written atomically; readable after a kill):
    config.toml            the config snapshot
    metrics.jsonl          every event, one JSON line each
    state.json             status, step, best dev accuracy, final test result
    .lock                  held by the one process writing the run (zoengine.rundir)
    checkpoints/last/      trainable tensors + optimizer/scheduler/counter state (resume point)
    checkpoints/prev/      the checkpoint before last (used when last fails verification)
    checkpoints/best/      trainable tensors of the best dev accuracy (step 0 included)
    (no pickle anywhere: safetensors + JSON with a sha256 manifest, see zoengine.checkpoint)
    exports/               what `zoengine export` wrote

Data order is a pure function of (seed, step), and the optimizer's generator is checkpointed,
so a resumed run repeats the uninterrupted run's losses exactly (CPU, float32).
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from zoengine.config import RunConfig
from zoengine.errors import CheckpointError, ZOError, filesystem_error
from zoengine.events import (
    CheckpointSaved,
    EvalDone,
    EvalProgress,
    Event,
    LogMessage,
    RunInfo,
    StatusChanged,
    StepLogged,
)
from zoengine.io import append_jsonl, kill_point, read_jsonl
from zoengine.paths import runs_home

log = logging.getLogger(__name__)

EVENT_QUEUE_SIZE = 10_000
PAUSE_POLL_SECONDS = 0.1  # how soon a paused run notices "evaluate now"
EVAL_PROGRESS_SECONDS = 1.0  # at most one EvalProgress event per second of an evaluation
TERMINAL = ("finished", "stopped", "failed", "diverged")


class _StopRequested(Exception):
    """Raised inside the loss closure so a stop takes effect within one query."""


class _Diverged(Exception):
    """Raised when a divergence cannot be recovered (retries spent): the run ends as 'diverged'."""


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
        self.test_result: dict[str, Any] | None = None  # loss, accuracy, examples, checkpoint, step
        self._subscribers: list[Callable[[Event], None]] = []
        self._stop = threading.Event()
        self._save_on_stop = True
        self._running = threading.Event()
        self._running.set()
        self._eval_requested = threading.Event()
        self._checkpoint_clock = time.monotonic()  # when the last checkpoint was written (monotonic)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._dir_lock: Any = None  # the run directory's filelock, held while this run writes it
        self._owner = False  # True once this run holds that lock: only then does it write the folder
        # populated by _setup
        self.loaded: Any = None
        self.task: Any = None
        self.objective: Any = None
        self.handle: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.forward_passes = 0
        self.tokens = 0
        self.guard: Any = None  # DivergenceGuard, built after setup
        # zoengine.distributed.Dist: this process's rank (joined in run(); a world of 1 without torchrun)
        self.dist: Any = None
        # several ranks: their stop / "evaluate now" requests, agreed by one all-reduce (_agree)
        self._agreed_stop = False
        self._eval_agreed = False
        self._fresh_agreement = False  # an agreement since the last step: the loop's check uses it
        self._agree_bytes = 0  # bytes of agreements not yet counted in a step's comm_bytes

    # --- control (any thread) ---------------------------------------------------------------------

    @classmethod
    def resume_from(cls, run_dir: str | Path) -> Run:
        """Continue ``run_dir`` from its last intact checkpoint (from step 0 when it has none yet)."""
        from zoengine.rundir import load_config

        run_dir = Path(run_dir)
        return cls(load_config(run_dir), run_dir, resume=True)

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
        if self.dist is not None and self.dist.enabled:  # the other ranks would time out waiting
            self._log("a multi-process run cannot pause (stop it and resume later)", "warning")
            return
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
        if self._owner:
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
        from zoengine.rundir import write_state

        if not self._owner:
            return
        write_state(
            self.run_dir,
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
            self._join_job()
            self.dist.together("preparing the run directory", self._prepare_dir)
            self._set_status("loading", "loading model and data")
            self.dist.together("loading model and data", self._setup)
            if self._stop_agreed():
                self._set_status("stopped", "stopped before training")
                return
            self._fresh_agreement = False  # a stop asked during the zero-shot evaluation ends step 1
            self._agree_bytes = 0  # (the start's agreement belongs to no step)
            self._train()
        except _Diverged as exc:
            self._end_diverged(str(exc))
        except ZOError as exc:
            self._fail(exc.one_line(), user=True)
        except Exception as exc:  # report, never hang the caller
            fs_error = filesystem_error(exc, self.run_dir, "run.output_dir", self._checkpoint_note())
            if fs_error is not None:  # read-only, not a folder, disk full: the user can fix it
                self._fail(fs_error.one_line(), user=True)
            else:
                log.exception("run failed")
                self._fail(f"{type(exc).__name__}: {exc}".splitlines()[0], user=False)
        finally:
            self._release_dir()

    def _fail(self, text: str, *, user: bool) -> None:
        """End as 'failed' with one line; a full or read-only disk must not turn the report into a crash."""
        self.error, self.error_is_user = text, user
        try:
            if self._owner:  # a refused writer (run busy, folder holds a run) leaves the folder as it is
                self._log(text, "error")
            self._set_status("failed", text)
        except OSError:
            self.status = "failed"
            with contextlib.suppress(queue.Full):
                self.events.put_nowait(StatusChanged(status="failed", message=text))

    def _checkpoint_note(self) -> str:
        step = self._saved_step
        if step is None and self.resuming and (self.run_dir / "checkpoints" / "last").is_dir():
            step = self.step
        if step is None:
            return "no checkpoint was written yet"
        return f"the last checkpoint at step {step} is intact"

    def _join_job(self) -> None:
        """Join the torchrun job if there is one (zoengine.distributed); all ranks use rank 0's run dir."""
        from zoengine import distributed

        if self.dist is None:
            self.dist = distributed.from_env(mode=self.config.run.parallel, device=self.config.model.device)
        if self.dist.enabled:
            self.run_dir = Path(self.dist.broadcast_object(str(self.run_dir), "agreeing on the run directory"))

    @property
    def _is_main(self) -> bool:
        """The rank that writes the run directory (the only one without torchrun)."""
        return self.dist is None or self.dist.is_main

    def _prepare_dir(self) -> None:
        """Take the run directory's lock, then create the run (train) or repair it (resume).

        Until this succeeds nothing is written: a second writer, or a train into a folder that holds
        a run with checkpoints, is refused without touching it. A folder whose run died before its
        first checkpoint (or failed to start) is started afresh.
        """
        from zoengine import checkpoint, rundir

        if not self._is_main:  # rank 0 owns the folder; the others only read checkpoints on resume
            return
        self._dir_lock = rundir.acquire_lock(self.run_dir)
        notes: list[str] = []
        if self.resuming:
            notes = checkpoint.recover(self.run_dir)
        elif (self.run_dir / rundir.CONFIG_NAME).exists() or (self.run_dir / rundir.STATE_NAME).exists():
            if checkpoint.has_resume_point(self.run_dir):
                raise CheckpointError(
                    f"run directory already holds a run: {self.run_dir} (use resume)", field="run.output_dir"
                )
            for name in ("metrics.jsonl", rundir.STATE_NAME, rundir.CONFIG_NAME):
                (self.run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)  # a dead run's best, if any
            notes = [f"{self.run_dir} held a run that never reached a checkpoint: starting it afresh"]
        rundir.clean_temps(self.run_dir)
        if not self.resuming:
            rundir.write_config(self.config, self.run_dir)
        self._owner = True
        for note in notes:
            self._log(note, "warning")

    def _release_dir(self) -> None:
        self._owner = False
        lock, self._dir_lock = self._dir_lock, None
        if lock is not None:
            lock.release()

    def _setup(self) -> None:
        from zoengine.adapters import apply_adapter
        from zoengine.models import load_model
        from zoengine.objectives import Objective
        from zoengine.optim import build_optimizer, lr_rule_text, make_lr_lambda, resolved_lr
        from zoengine.tasks import check_label_words, load_task

        cfg = self.config
        torch.manual_seed(cfg.run.seed)  # adapter inits; perturbations use the optimizer's own generator
        if self.task is None:  # the CLI loads it first, to refuse bad data before touching the disk
            self.task = load_task(cfg.task)
        for note in self.task.notes:
            self._log(f"data: {note}")
        if not self.task.train:
            raise ZOError("the training split is empty", field="task.n_train")
        label_texts = self.task.label_words or self.task.label_names
        self.loaded = load_model(cfg.model, label_texts=label_texts)
        if self._owner:  # what an export needs, so it never reloads the task (zoengine.exporting)
            from zoengine.adapters import base_weights_hash
            from zoengine.exporting import write_model_info

            base_hash = base_weights_hash(self.loaded.model)
            write_model_info(self.run_dir, self.loaded.kind, self.loaded.model, label_texts, base_hash)
        if self.loaded.kind != "classifier":
            for w in check_label_words(self.task, self.loaded.tokenizer) or []:
                self._log(w, "warning")
        self.objective = Objective(self.loaded, self.task, cfg.model.max_length)
        for w in self.objective.warnings:
            self._log(w, "warning")
        self.handle = apply_adapter(self.loaded.model, cfg.adapter, seed=cfg.run.seed)
        self.handle.set_run_length(cfg.run.steps)
        prefix = self.objective.share_prefix(cfg.run.share_prefix)
        if prefix is not None and prefix.active:
            self._log(
                f"blocks 0-{prefix.start - 1} of {prefix.n_layers} hold nothing trainable: they run once per "
                "batch and every query of a step reuses their output"
            )
        groups = self.handle.param_groups(cfg.optimizer.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.task.train) / cfg.run.batch_size)
        self.lr = resolved_lr(cfg, self.handle.num_trainable())
        if cfg.optimizer.lr is None:
            self._log(lr_rule_text(cfg.optimizer.name, cfg.adapter.method, self.handle.num_trainable(), cfg.run.steps))
        self.optimizer = build_optimizer(
            cfg.optimizer,
            groups,
            seed=cfg.run.seed,
            total_steps=cfg.run.steps,
            steps_per_epoch=self.steps_per_epoch,
            lr=self.lr,
        )
        for note in getattr(self.optimizer, "notes", []):
            self._log(note, "warning")
        if self.dist is not None and self.dist.enabled:
            if self.optimizer.uses_backward:
                raise ZOError(
                    f"{cfg.optimizer.name} is first-order: multi-process runs take zeroth-order methods",
                    field="optimizer.name",
                )
            self.optimizer.query_split = self.dist.query_split()
            self._log(f"distributed: {self.dist.describe()}")
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
                    "forward_schedule": forward_schedule(self.optimizer, cfg.run.steps),
                },
            )
        )
        self._log(
            f"{cfg.model.name} ({self.loaded.kind}, {self.loaded.num_params():,} params, "
            f"{self.handle.num_trainable():,} trainable) on {self.loaded.device}; "
            f"train/dev/test = {len(self.task.train)}/{len(self.task.dev)}/{len(self.task.test)}"
        )

    def _evaluate(self, split: str, *, sharded: bool = True) -> EvalDone:
        """Loss and accuracy on ``split``. In a multi-process run each rank scores its shard and the
        ranks add up the sums, so every rank gets the whole split's result (``sharded=False``: this
        rank scores the whole split alone)."""
        examples = getattr(self.task, split)
        dist = self.dist if sharded and self.dist is not None and self.dist.enabled else None
        mine = dist.eval_shard(examples) if dist is not None else examples
        t0 = time.perf_counter()
        last = [-math.inf]

        def progress(done: int, total: int) -> None:
            """EvalProgress at the start, then at most once per EVAL_PROGRESS_SECONDS (not at the
            end: EvalDone says that), so a long test evaluation shows where it is (in a
            multi-process run: where this rank is in its shard)."""
            now = time.monotonic()
            if done < total and (done == 0 or now - last[0] >= EVAL_PROGRESS_SECONDS):
                last[0] = now
                self._emit(
                    EvalProgress(step=self.step, split=split, done=done, total=total, examples=len(examples))
                )

        sums = self.objective.eval_sums(mine, self.config.run.eval_batch_size, progress=progress)
        if dist is not None:  # 3 float64 per rank; every rank joins, an empty shard with zeros
            sums = tuple(dist.all_reduce_sum(sums))
        total_loss, correct, seen = sums
        loss, acc = (total_loss / seen, correct / seen) if seen else (math.nan, math.nan)
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

    def _dev_eval_and_track(self) -> bool:
        """Evaluate on dev and keep the best; False when the evaluation found a divergence and the
        run rolled back (a non-finite dev loss is never "best": a NaN model's accuracy means nothing)."""
        if not self.task.dev:
            return True
        ev = self._evaluate("dev")
        if not math.isfinite(ev.loss):
            self._divergence(f"dev loss is {ev.loss}", at=self.step, resume_at=self.step + 1)
            return False
        if not math.isnan(ev.accuracy) and (
            self.best_dev_accuracy is None or ev.accuracy > self.best_dev_accuracy
        ):
            self.best_dev_accuracy = ev.accuracy
            self._save_best()  # step 0 (zero-shot) is a checkpoint like any other
        self._write_state()
        return True

    def _final_dev_eval(self) -> bool:
        """The end-of-run dev evaluation, unless the last step just had one; False if it rolled back."""
        every = self.config.run.eval_every
        if not self.task.dev or (every and self.step % every == 0):
            return True
        return self._dev_eval_and_track()

    def _train(self) -> None:
        run = self.config.run
        self._checkpoint_clock = time.monotonic()
        self._set_status("running", "resumed" if self.resuming else "training")
        self.guard = self._make_guard()
        # 1. zero-shot evaluation (what the model does before any update)
        if run.zero_shot_eval and self.step == 0:
            self._dev_eval_and_track()
        while True:
            while self.step < run.steps:
                # 2. pause / stop
                if not self._running.is_set():
                    self._set_status("paused")
                    self._wait_while_paused()
                    if not self._stop.is_set():
                        self._set_status("running", "resumed")
                if self._stop_agreed():
                    break
                # 3. one optimizer step on the step's batch (a divergence rolls back instead)
                try:
                    self._one_step()
                except _StopRequested:
                    break
                if self.dist is not None and self.dist.enabled:  # stop / evaluate-now asked on any rank
                    self._agree()
                # 4. evaluation and checkpoints
                if self._take_eval_request() or (run.eval_every and self.step % run.eval_every == 0):
                    if not self._dev_eval_and_track():
                        continue  # rolled back: redo the steps from the restored state
                if (run.checkpoint_every and self.step % run.checkpoint_every == 0) or self._checkpoint_due():
                    self._save_checkpoint()
            # 5. final dev evaluation; a divergence found there rolls back and training goes on
            if self._stop_agreed() or self._final_dev_eval():
                break
        self._finish()

    def _wait_while_paused(self) -> None:
        """Block until resumed or stopped; an evaluation requested meanwhile runs at once."""
        while not self._running.wait(PAUSE_POLL_SECONDS):
            if self._eval_requested.is_set():
                self._eval_requested.clear()
                if not self.task.dev:
                    self._log("evaluate now: this task has no dev split", "warning")
                    continue
                self._set_status("paused", "evaluating dev")
                self._dev_eval_and_track()
                self._set_status("paused", "dev evaluated")

    def _stop_agreed(self) -> bool:
        """A stop request; with several ranks, one rank's request stops them all at the same point
        (the agreement made right after the last step, or a new one)."""
        if self.dist is None or not self.dist.enabled:
            return self._stop.is_set()
        if not self._fresh_agreement:
            self._agree()
        self._fresh_agreement = False
        return self._agreed_stop

    def _agree(self) -> None:
        """One all-reduce makes any rank's stop request and "evaluate now" every rank's: the ranks
        must take the same branches, since evaluations are sharded and steps exchange losses."""
        d = self.dist
        sent = d.bytes_sent
        asked = self._eval_requested.is_set()
        if asked:
            self._eval_requested.clear()  # taken by this agreement
        stop, evaluate = d.all_reduce_sum([float(self._stop.is_set()), float(asked)])
        if stop > 0:
            self._stop.set()
            self._agreed_stop = True
        self._eval_agreed = self._eval_agreed or evaluate > 0
        self._fresh_agreement = True
        self._agree_bytes += d.bytes_sent - sent  # counted in the next step's comm_bytes

    def _take_eval_request(self) -> bool:
        """"Evaluate now" after this step: this process's request, or with several ranks the one
        they agreed on right after the step."""
        if self.dist is not None and self.dist.enabled:
            agreed, self._eval_agreed = self._eval_agreed, False
            return agreed
        asked = self._eval_requested.is_set()
        self._eval_requested.clear()
        return asked

    def _checkpoint_due(self) -> bool:
        """``run.checkpoint_minutes`` of wall time since the last checkpoint (or the run's start)."""
        minutes = self.config.run.checkpoint_minutes
        return bool(minutes) and time.monotonic() - self._checkpoint_clock >= 60.0 * minutes

    # --- divergence guard (see zoengine.divergence) -----------------------------------------------

    def _make_guard(self) -> Any:
        from zoengine.divergence import LOSS_FLOOR, DivergenceGuard

        r = self.config.run
        return DivergenceGuard(
            self.handle,
            self.optimizer,
            self.scheduler,
            factor=r.divergence_factor,
            lr_factor=r.divergence_lr_factor,
            retries=r.divergence_retries,
            interval=r.checkpoint_every or 100,
            floor=math.log(k) if (k := int(getattr(self.task, "num_classes", 0) or 0)) >= 2 else LOSS_FLOOR,
        )

    def _divergence(self, problem: str, *, at: int, resume_at: int) -> None:
        """Roll back to the last good state and lower the lr, or raise ``_Diverged`` when spent.

        ``at`` is the step where the problem showed; the recovery counts as done once step
        ``resume_at`` has been accepted again.
        """
        guard = self.guard
        if guard is None or not guard.record(resume_at):
            target = guard.target() if guard is not None else None
            if target is not None:  # leave the last good weights in place, not the broken ones
                guard.restore(target)
                self.step = target.step
            if guard is None or guard.retries == 0:
                why = "run.divergence_retries = 0"
            elif target is None:
                why = "no earlier good state to return to"
            else:
                why = f"{guard.retries} recoveries failed"
            raise _Diverged(f"diverged at step {at}: {problem} ({why})")
        target = guard.target()
        assert target is not None  # record() checked it
        guard.restore(target)
        self.step = target.step
        lr = guard.reduce_lr()
        self._log(
            f"divergence at step {at}: {problem}; rolled back to step {target.step}, "
            f"lr x{guard.lr_factor:g} -> {lr:.3g} (recovery {guard.failures} of {guard.retries})",
            "warning",
        )
        self._write_state()

    def _end_diverged(self, message: str) -> None:
        guard = self.guard
        if guard is not None and guard.target() is not None:
            try:
                self._save_checkpoint()
                message += f"; the last good state (step {self.step}) is in checkpoints/last"
            except Exception as exc:  # the status must still be written
                log.exception("checkpoint after divergence failed")
                message += f"; saving the last good state failed: {exc}".splitlines()[0]
        else:
            message += "; checkpoints on disk are unchanged"
        self.error = message  # carried by the status event (one line in the CLI and the app's log)
        self._set_status("diverged", message)

    def _one_step(self) -> None:
        cfg = self.config
        if self.guard is not None:
            self.guard.before_step(self.step)
        idx = batch_indices(self.step, len(self.task.train), cfg.run.batch_size, cfg.run.seed)
        dist = self.dist if self.dist is not None and self.dist.enabled else None
        if dist is not None:
            idx = dist.shard(idx)  # data-parallel: this rank's share of the global batch
        batch = self.objective.make_batch([self.task.train[i] for i in idx]) if idx else None
        opt, objective = self.optimizer, self.objective
        sent0 = dist.bytes_sent if dist is not None else 0

        def closure() -> torch.Tensor:
            if self._stop.is_set() and dist is None:  # ranks agree on stops between steps
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
            loss = opt.step(dist.reduce_closure(closure, len(idx)) if dist is not None else closure)
        except _StopRequested:
            self._log(f"stop requested during step {self.step + 1}; the partial step was discarded")
            raise
        seconds = time.perf_counter() - t0
        stats = dict(opt.last_stats)
        queries = int(stats.pop("queries", 1))
        self.forward_passes += int(stats.pop("forward_passes", 2 * queries))  # spent, even if rolled back
        step_tokens = batch.tokens if batch is not None else 0
        if dist is not None and dist.mode == "data":  # count the whole batch's tokens, not this shard's
            step_tokens = int(dist.all_reduce_sum([step_tokens])[0])
        # payload this rank put into the step's collectives: the optimizer's exchange (O(Q) floats)
        # plus bookkeeping: 16 bytes of stop/evaluate flags, 8 of the batch's token count (data mode)
        comm_bytes = 0
        if dist is not None:
            comm_bytes, self._agree_bytes = dist.bytes_sent - sent0 + self._agree_bytes, 0
        self.tokens += step_tokens * max(1, 2 * queries if not opt.uses_backward else 1)
        if self.guard is not None:
            pgs = [float(g) for g in stats.get("projected_grads", [])]
            problem = self.guard.check_step(float(loss), pgs)
            if problem is not None:
                self._divergence(problem, at=self.step + 1, resume_at=self.step + 1)
                return
        self.step += 1
        lr = float(stats.pop("lr", opt.param_groups[0]["lr"]))
        self.scheduler.step()
        self.handle.after_step(self.step, lr)
        if self.guard is not None:
            self.guard.accept(self.step, float(loss))
        extra = {k: v for k, v in stats.items() if k not in ("projected_grads",)}
        extra.update(self.handle.stats())
        if dist is not None:
            extra["comm_bytes"] = comm_bytes
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
        stopped = self._agreed_stop if self.dist is not None and self.dist.enabled else self._stop.is_set()
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
        # final: test on the best checkpoint (the final dev eval ran in _train)
        sharded = True
        if self.dist is not None and self.dist.enabled:
            self.dist.barrier()  # rank 0 has written checkpoints/best before any rank reads it
            used, used_step = self._load_best_for_test()
            views = self.dist.gather_object((used, used_step), "choosing the checkpoint to test")
            if any(v != views[0] for v in views):  # e.g. a run directory not shared between machines
                sharded = False
                self._log(
                    f"the ranks see different checkpoints ({views}); rank 0 tests its own alone "
                    "(a shared run directory lets every rank take a share)",
                    "warning",
                )
                if not self._is_main:
                    self._set_status("finished", f"finished {self.step} steps")
                    return
        else:
            used, used_step = self._load_best_for_test()
        if self.task.test:
            ev = self._evaluate("test", sharded=sharded)
            self.test_result = {
                "loss": ev.loss,
                "accuracy": ev.accuracy,
                "examples": ev.examples,
                "checkpoint": used,  # what was tested: "best" or "last" (named, never implied)
                "step": used_step,
            }
        self._set_status("finished", f"finished {self.step} steps")

    # --- checkpoints -----------------------------------------------------------------------------

    def _trainable_cpu(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu").contiguous() for k, v in self.handle.trainable_state_dict().items()}

    def _save_checkpoint(self) -> None:
        from zoengine import checkpoint

        if not self._is_main:  # rank 0 writes; every rank holds the same state
            self._saved_step = self.step
            self._checkpoint_clock = time.monotonic()
            return
        kill_point("checkpoint-start")
        data, tensors = checkpoint.pack(
            {
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "forward_passes": self.forward_passes,
                "tokens": self.tokens,
                "best_dev_accuracy": self.best_dev_accuracy,
                "torch_rng": torch.get_rng_state(),
            }
        )
        target = checkpoint.write(
            self.run_dir / "checkpoints",
            "last",
            kind="last",
            step=self.step,
            tensors={checkpoint.TRAINABLE: self._trainable_cpu(), checkpoint.STATE_TENSORS: tensors},
            jsons={checkpoint.STATE_JSON: data},
            keep_prev=True,
        )
        self._saved_step = self.step
        self._checkpoint_clock = time.monotonic()
        self._write_state()
        self._emit(CheckpointSaved(step=self.step, path=str(target)))

    def _save_best(self) -> None:
        from zoengine import checkpoint

        if not self._is_main:
            return
        target = checkpoint.write(
            self.run_dir / "checkpoints",
            "best",
            kind="best",
            step=self.step,
            tensors={checkpoint.TRAINABLE: self._trainable_cpu()},
            info={"dev_accuracy": self.best_dev_accuracy},
        )
        self._emit(CheckpointSaved(step=self.step, path=str(target), best=True))

    def _load_checkpoint(self) -> None:
        """Restore the last intact checkpoint (reporting any that fails verification), or start at 0."""
        from zoengine import checkpoint

        found, notes = checkpoint.find(self.run_dir, "last", require=checkpoint.RESUME_FILES)
        if found is None:
            if notes:
                raise CheckpointError(
                    f"no intact checkpoint to resume from ({'; '.join(notes)})",
                    field="run",
                    hint=f"delete {self.run_dir / 'checkpoints'} to restart from step 0",
                )
            self._log("the run has no checkpoint yet: restarting it from step 0", "warning")
            return
        for note in notes:
            self._log(f"{note}; resuming from {found.describe()} instead", "warning")
        try:
            state = found.trainer_state()
            self.handle.load_trainable_state_dict(found.tensors())
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step = int(state["step"])
            self.forward_passes = int(state["forward_passes"])
            self.tokens = int(state["tokens"])
            torch.set_rng_state(state["torch_rng"])
            best_so_far = state["best_dev_accuracy"]
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
            raise CheckpointError(
                f"{found.label}: unusable trainer state ({type(exc).__name__}: {exc})".splitlines()[0],
                field="run",
            ) from None
        if self.step != found.step:
            raise CheckpointError(f"{found.label}: state step {self.step} != manifest step {found.step}", field="run")
        if found.label == "checkpoints/last":
            self._saved_step = self.step
        self._restore_best(best_so_far)
        self._log(f"resumed from step {self.step} ({found.label})")

    def _restore_best(self, best_so_far: Any) -> None:
        """The best dev accuracy is the one of an intact ``best`` checkpoint; without one it is forgotten."""
        from zoengine import checkpoint

        best, notes = checkpoint.find(self.run_dir, "best")
        acc = best.info.get("dev_accuracy") if best is not None else None
        if isinstance(acc, int | float) and not isinstance(acc, bool) and math.isfinite(acc):
            self.best_dev_accuracy = float(acc)
            return
        self.best_dev_accuracy = None
        if best_so_far is not None:
            why = "; ".join(notes) or "checkpoints/best: missing"
            self._log(
                f"{why}: the best dev accuracy so far ({best_so_far}) has no intact checkpoint; "
                "the best is chosen again from the next evaluation on",
                "warning",
            )

    def _load_best_for_test(self) -> tuple[str, int]:
        """Put the best dev checkpoint in place for the test and name it, or say what is used instead."""
        from zoengine import checkpoint

        if not self.task.dev:
            return "last", self.step
        best, notes = checkpoint.find(self.run_dir, "best")
        if best is None:
            why = "; ".join(notes) or "checkpoints/best: missing"
            self._log(f"{why}; testing the final weights (checkpoints/last, step {self.step}) instead", "warning")
            return "last", self.step
        self.handle.load_trainable_state_dict(best.tensors())
        acc = best.info.get("dev_accuracy")
        self._log(f"test evaluation uses checkpoints/best (step {best.step}, dev accuracy {acc})")
        return "best", best.step

    # --- export ----------------------------------------------------------------------------------

    def export(
        self, fmt: str, dest: Path | None = None, *, checkpoint: str = "best", force: bool = False
    ) -> list[Path]:
        """Export the trained adapter; works on a finished run or a live one (between steps).
        ``dest`` must be absent or empty unless ``force`` (atomic replace)."""
        from zoengine.exporting import export_run

        return export_run(self.run_dir, fmt, dest, checkpoint=checkpoint, force=force)


def forward_schedule(optimizer: Any, total_steps: int) -> list[list[int]]:
    """Forward passes per training step over the whole run, run-length encoded as
    ``[[first_step, passes_per_step], ...]`` (1-based steps): known in advance for every method,
    AdaZeta's growing Q included, so a UI can estimate the time left from the passes still to do."""
    queries = getattr(optimizer, "queries_for_step", None)
    if getattr(optimizer, "uses_backward", False) or queries is None:
        queries = None  # first order: one forward (and one backward) per step
    out: list[list[int]] = []
    for t in range(1, max(0, total_steps) + 1):
        passes = 2 * int(queries(t)) if queries is not None else 1
        if not out or out[-1][1] != passes:
            out.append([t, passes])
    return out


def read_state(run_dir: Path) -> dict[str, Any]:
    """``state.json`` checked (shape, checksum); ``{}`` when missing or damaged."""
    from zoengine.rundir import read_state as checked

    return checked(run_dir)[0]


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / "metrics.jsonl")
