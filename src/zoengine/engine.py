"""The run loop: one ``Run`` trains one config into one run directory, headless or in a thread.

    run = Run(RunConfig.load("run.toml"))
    run.start()                      # background thread; or run.run() to block
    event = run.events.get()         # StepLogged, EvalDone, StatusChanged, ...
    run.pause(); run.resume(); run.stop(save=True); run.join()

Around the loop: ``run_control`` (thread, status, events, requests), ``run_setup``, ``run_eval``,
``run_checkpoints``; the run directory's layout is described in ``zoengine.rundir``.

Data order is a pure function of (seed, step), and the optimizer's generator is checkpointed,
so a resumed run repeats the uninterrupted run's losses exactly (CPU, float32).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from zoengine import run_checkpoints, run_eval, run_setup
from zoengine.config import RunConfig
from zoengine.divergence import DivergenceGuard
from zoengine.errors import ZOError, filesystem_error
from zoengine.events import TERMINAL_STATUSES as TERMINAL  # the statuses a run ends with
from zoengine.events import CheckpointSaved, EvalDone, RunStatus, StepLogged
from zoengine.io import read_jsonl
from zoengine.run_control import RunControl
from zoengine.run_setup import forward_schedule
from zoengine.rundir import new_run_dir

__all__ = ["TERMINAL", "Run", "batch_indices", "forward_schedule", "metrics", "new_run_dir", "read_state"]

log = logging.getLogger(__name__)


class _StopRequested(Exception):
    """Raised inside the loss closure so a stop takes effect within one query."""


class _Diverged(Exception):
    """Raised when a divergence cannot be recovered (retries spent): the run ends as 'diverged'."""


def batch_indices(step: int, n_train: int, batch_size: int, seed: int) -> list[int]:
    """Examples of ``step``: epoch-wise seeded permutation, last batch of an epoch may be short."""
    steps_per_epoch = math.ceil(n_train / batch_size)
    epoch, within = divmod(step, steps_per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n_train, generator=gen)
    return perm[within * batch_size : (within + 1) * batch_size].tolist()


class Run(RunControl):
    """Train ``config`` into ``run_dir``; controllable from another thread (``RunControl``)."""

    def __init__(self, config: RunConfig, run_dir: Path | None = None, *, resume: bool = False) -> None:
        config = config.validate()
        super().__init__(config, Path(run_dir) if run_dir is not None else new_run_dir(config), resume=resume)
        self._saved_step: int | None = None  # step of checkpoints/last, so the end does not rewrite it
        self._checkpoint_clock = time.monotonic()  # when the last checkpoint was written (monotonic)
        # set by _setup (zoengine.run_setup)
        self.task: Any = None  # the CLI may set it first (it loads the task to refuse bad data early)
        self.loaded: Any = None
        self.objective: Any = None
        self.handle: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.lr: float | None = None
        self.steps_per_epoch = 0
        self.forward_passes = 0
        self.tokens = 0
        self.guard: Any = None  # DivergenceGuard, built when training starts

    @classmethod
    def resume_from(cls, run_dir: str | Path) -> Run:
        """Continue ``run_dir`` from its last intact checkpoint (from step 0 when it has none yet)."""
        from zoengine.rundir import load_config

        run_dir = Path(run_dir)
        return cls(load_config(run_dir), run_dir, resume=True)

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Execute the whole run in the calling thread. Errors end as status 'failed'."""
        try:
            self._join_job()
            self.dist.together("preparing the run directory", self._prepare_dir)
            self._set_status(RunStatus.LOADING, "loading model and data")
            self.dist.together("loading model and data", self._setup)
            if self._stop_agreed():
                self._set_status(RunStatus.STOPPED, "stopped before training")
                return
            self._fresh_agreement = False  # a stop asked during the zero-shot evaluation ends step 1
            self._agree_bytes = 0  # (the start's agreement belongs to no step)
            self._train()
        except _Diverged as exc:
            self._end_diverged(str(exc))
        except ZOError as exc:
            self._fail(exc.one_line(), user=True)
        except Exception as exc:  # report, never hang the caller
            note = run_checkpoints.failure_note(
                self.run_dir, self._saved_step, resuming=self.resuming, step=self.step
            )
            fs_error = filesystem_error(exc, self.run_dir, "run.output_dir", note)
            if fs_error is not None:  # read-only, not a folder, disk full: the user can fix it
                self._fail(fs_error.one_line(), user=True)
            else:
                log.exception("run failed")
                self._fail(f"{type(exc).__name__}: {exc}".splitlines()[0], user=False)
        finally:
            self._release_dir()

    def _setup(self) -> None:
        """Build what the run trains with (``zoengine.run_setup``), restore a resume point, announce."""
        cfg = self.config
        info_dir = self.run_dir if self._owner else None
        s = run_setup.build(cfg, self.task, dist=self.dist, log=self._log, model_info_dir=info_dir)
        self.task, self.loaded, self.objective, self.handle = s.task, s.loaded, s.objective, s.handle
        self.optimizer, self.scheduler = s.optimizer, s.scheduler
        self.lr, self.steps_per_epoch = s.lr, s.steps_per_epoch
        if self.resuming:
            self._load_checkpoint()
        self._emit(run_setup.run_info(cfg, s, resumed_at=self.step if self.resuming else None))
        self._log(run_setup.summary(cfg, s))

    def _train(self) -> None:
        """The training loop: steps until ``run.steps``, with evaluations, checkpoints, pauses, stops."""
        run = self.config.run
        self._checkpoint_clock = time.monotonic()
        self._set_status(RunStatus.RUNNING, "resumed" if self.resuming else "training")
        num_classes = int(getattr(self.task, "num_classes", 0) or 0)
        self.guard = DivergenceGuard.for_run(run, self.handle, self.optimizer, self.scheduler, num_classes)
        # 1. zero-shot evaluation (what the model does before any update)
        if run.zero_shot_eval and self.step == 0:
            self._dev_eval_and_track()
        while True:
            while self.step < run.steps:
                # 2. pause / stop
                if not self._running.is_set():
                    self._set_status(RunStatus.PAUSED)
                    self._wait_while_paused(self._dev_eval_and_track if self.task.dev else None)
                    if not self._stop.is_set():
                        self._set_status(RunStatus.RUNNING, "resumed")
                if self._stop_agreed():
                    break
                # 3. one optimizer step on the step's batch (a divergence rolls back instead)
                try:
                    self._one_step()
                except _StopRequested:
                    break
                if self._multi:  # stop / evaluate-now asked on any rank
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

    def _checkpoint_due(self) -> bool:
        """``run.checkpoint_minutes`` of wall time since the last checkpoint (or the run's start)."""
        minutes = self.config.run.checkpoint_minutes
        return bool(minutes) and time.monotonic() - self._checkpoint_clock >= 60.0 * minutes

    def _one_step(self) -> None:
        """One optimizer step on the step's batch, logged as ``StepLogged`` (or rolled back)."""
        cfg = self.config
        if self.guard is not None:
            self.guard.before_step(self.step)
        idx = batch_indices(self.step, len(self.task.train), cfg.run.batch_size, cfg.run.seed)
        dist = self.dist if self._multi else None
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
        """Save the end state; unless stopped, test the best dev checkpoint."""
        stopped = self._stopped()
        if stopped and not self._save_on_stop:
            self._set_status(RunStatus.STOPPED, "stopped without saving")
            return
        if self._saved_step != self.step:
            self._save_checkpoint()
        if stopped:
            resume = f"resume with `zoengine resume {self.run_dir}`"
            self._set_status(RunStatus.STOPPED, f"stopped at step {self.step}; {resume}")
            return
        self._test()  # the final dev evaluation ran in _train
        self._set_status(RunStatus.FINISHED, f"finished {self.step} steps")

    def _test(self) -> None:
        """Evaluate the best dev checkpoint (named in ``test_result``) on test. The ranks share the
        work unless they see different checkpoints (a run directory not shared between machines):
        then rank 0 tests its own alone."""
        if self._multi:
            self.dist.barrier()  # rank 0 has written checkpoints/best before any rank reads it
        used, used_step = run_checkpoints.load_best_for_test(
            self.run_dir, handle=self.handle, step=self.step, has_dev=bool(self.task.dev), log=self._log
        )
        sharded = True
        if self._multi:
            views = self.dist.gather_object((used, used_step), "choosing the checkpoint to test")
            if any(v != views[0] for v in views):
                sharded = False
                self._log(
                    f"the ranks see different checkpoints ({views}); rank 0 tests its own alone "
                    "(a shared run directory lets every rank take a share)",
                    "warning",
                )
                if not self._is_main:
                    return
        if self.task.test:
            ev = self._evaluate("test", sharded=sharded)
            self.test_result = {
                "loss": ev.loss,
                "accuracy": ev.accuracy,
                "examples": ev.examples,
                "checkpoint": used,  # what was tested: "best" or "last" (named, never implied)
                "step": used_step,
            }

    # --- evaluation (zoengine.run_eval) ---------------------------------------------------------

    def _evaluate(self, split: str, *, sharded: bool = True) -> EvalDone:
        """Loss and accuracy on ``split`` (``zoengine.run_eval``); ``sharded=False``: in a
        multi-process run, this rank scores the whole split alone."""
        dist = self.dist if sharded and self._multi else None
        examples, batch_size = getattr(self.task, split), self.config.run.eval_batch_size
        return run_eval.evaluate(
            self.objective, examples, split, step=self.step, batch_size=batch_size, dist=dist, emit=self._emit
        )

    def _dev_eval_and_track(self) -> bool:
        """Evaluate on dev and keep the best; False when the evaluation found a divergence and the
        run rolled back (a non-finite dev loss is never "best": a NaN model's accuracy means nothing)."""
        if not self.task.dev:
            return True
        ev = self._evaluate("dev")
        if not math.isfinite(ev.loss):
            self._divergence(f"dev loss is {ev.loss}", at=self.step, resume_at=self.step + 1)
            return False
        if run_eval.is_new_best(ev.accuracy, self.best_dev_accuracy):
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

    # --- divergence (zoengine.divergence) -------------------------------------------------------

    def _divergence(self, problem: str, *, at: int, resume_at: int) -> None:
        """Roll back to the last good state and lower the lr, or raise ``_Diverged`` when spent
        (``DivergenceGuard.roll_back``: ``at`` is where the problem showed)."""
        if self.guard is None:  # no guard yet: nothing to return to
            raise _Diverged(f"diverged at step {at}: {problem} (run.divergence_retries = 0)")
        step, line, recovered = self.guard.roll_back(problem, at=at, resume_at=resume_at)
        if step is not None:
            self.step = step
        if not recovered:
            raise _Diverged(line)
        self._log(line, "warning")
        self._write_state()

    def _end_diverged(self, message: str) -> None:
        """End as 'diverged', leaving the last good state (if any) as the resume point."""
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
        self._set_status(RunStatus.DIVERGED, message)

    # --- checkpoints (zoengine.run_checkpoints) --------------------------------------------------

    def _save_checkpoint(self) -> None:
        """Write the resume point checkpoints/last: rank 0 only (every rank holds the same state)."""
        if self._is_main:
            run_checkpoints.save_last(
                self.run_dir,
                step=self.step,
                handle=self.handle,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                forward_passes=self.forward_passes,
                tokens=self.tokens,
                best_dev_accuracy=self.best_dev_accuracy,
            )
        self._saved_step, self._checkpoint_clock = self.step, time.monotonic()
        if self._is_main:
            self._write_state()
            self._emit(CheckpointSaved(step=self.step))

    def _save_best(self) -> None:
        """Write checkpoints/best (rank 0) for the best dev accuracy just measured."""
        if self._is_main:
            run_checkpoints.save_best(
                self.run_dir, step=self.step, handle=self.handle, dev_accuracy=self.best_dev_accuracy
            )
            self._emit(CheckpointSaved(step=self.step, best=True))

    def _load_checkpoint(self) -> None:
        """Continue from the last intact checkpoint, or from step 0 when there is none yet."""
        r = run_checkpoints.load_last(
            self.run_dir, handle=self.handle, optimizer=self.optimizer, scheduler=self.scheduler, log=self._log
        )
        if r is None:
            return
        self.step, self.forward_passes, self.tokens = r.step, r.forward_passes, r.tokens
        if r.label == "checkpoints/last":
            self._saved_step = self.step
        self.best_dev_accuracy = run_checkpoints.best_accuracy(self.run_dir, r.best_so_far, self._log)
        self._log(f"resumed from step {self.step} ({r.label})")

    # --- export ----------------------------------------------------------------------------------

    def export(
        self, fmt: str, dest: Path | None = None, *, checkpoint: str = "best", force: bool = False
    ) -> list[Path]:
        """Export the trained adapter; works on a finished run or a live one (between steps).
        ``dest`` must be absent or empty unless ``force`` (atomic replace)."""
        from zoengine.exporting import export_run

        return export_run(self.run_dir, fmt, dest, checkpoint=checkpoint, force=force)


def read_state(run_dir: Path) -> dict[str, Any]:
    """``state.json`` checked (shape, checksum); ``{}`` when missing or damaged."""
    from zoengine.rundir import read_state as checked

    return checked(run_dir)[0]


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of ``metrics.jsonl`` (a damaged line skipped)."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl")
