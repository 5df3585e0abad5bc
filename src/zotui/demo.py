"""A scripted engine with the surface of ``zoengine.engine.Run``, for tests, benchmarks and demos.

It produces the same events as the real engine (status, info, steps, evals, checkpoints, logs) at a
chosen pace, honours pause / resume / evaluate-now / stop-and-save within one step, writes a real
run directory (``config.toml``, ``metrics.jsonl``, ``checkpoint.json``), and can be resumed. The
loss is a seeded noisy exponential decay, so screenshots of a finished demo run are reproducible.

``work_seconds`` makes each step spin the CPU in Python (holding the GIL like a real step's Python
overhead), which is what ``bench/bench_tui.py`` needs to measure the UI's cost on training.
"""

from __future__ import annotations

import json
import math
import queue
import random
import threading
import time
from pathlib import Path
from typing import Any

from zoengine.config import RunConfig
from zoengine.errors import CheckpointError, ZOError
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
from zoengine.export_formats import FORMATS as EXPORT_FORMATS
from zoengine.io import append_jsonl, atomic_write_json, atomic_write_text
from zoengine.paths import runs_home

QUEUE_SIZE = 2048
EVAL_BATCHES = 4


def _new_run_dir(config: RunConfig) -> Path:
    """``run.output_dir``, else a fresh timestamped directory under the runs home (like the engine)."""
    if config.run.output_dir:
        return Path(config.run.output_dir).expanduser()
    name = config.run.name or f"demo-{config.optimizer.name}-{config.adapter.method}"
    base = runs_home() / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class DemoRun:
    """One scripted run; thread-safe controls, a bounded event queue that never blocks the run."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path | None = None,
        step_delay: float = 0.05,
        work_seconds: float = 0.0,
        start_step: int = 0,
        fail_at: int | None = None,
        load_seconds: float = 0.0,
        fixed_time: float | None = None,
        eval_seconds: float = 0.0,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir) if run_dir else _new_run_dir(config)
        self.step_delay = step_delay
        self.work_seconds = work_seconds
        self.start_step = start_step
        self.fail_at = fail_at
        self.load_seconds = load_seconds
        self.fixed_time = fixed_time  # a constant event timestamp, for reproducible screenshots
        self.eval_seconds = eval_seconds  # how long each evaluation takes (EVAL_BATCHES batches)
        self._events: queue.Queue[Event] = queue.Queue(maxsize=QUEUE_SIZE)
        self._status = "created"
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        self._save_on_stop = True
        self._eval_now = threading.Event()
        self._rng = random.Random(config.run.seed)
        self.step = start_step  # steps done, as in the engine (StepLogged.step counts from 1)
        self.best_dev_accuracy: float | None = None
        self._forward_passes = 0

    # --- the Run surface -------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return self._status

    @property
    def events(self) -> queue.Queue[Event]:
        return self._events

    def start(self) -> None:
        if self._thread is not None:
            raise ZOError("run already started")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.toml", self.config.to_toml())
        self._thread = threading.Thread(target=self._main, name=f"demo-run-{self.run_dir.name}")
        self._thread.start()

    def pause(self) -> None:
        if self._status == "running":
            self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def request_eval(self) -> None:
        self._eval_now.set()

    def stop(self, save: bool = True) -> None:
        self._save_on_stop = save
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def export(self, fmt: str, dest: Path, *, checkpoint: str = "best", force: bool = False) -> list[Path]:
        """Write placeholder adapter files in the layout of each format (same destination rules as
        the engine: absent or empty, or replaced atomically with ``force``)."""
        from zoengine.exporting import replacing_dir

        if fmt not in EXPORT_FORMATS:
            raise ZOError(f"unknown export format {fmt!r}; allowed: {', '.join(EXPORT_FORMATS)}")
        if fmt == "peft-lora" and self.config.adapter.method not in ("lora", "lora_xs", "sora"):
            raise ZOError(
                f"peft-lora needs a LoRA-family adapter (this run uses {self.config.adapter.method})",
                hint="export native or merged instead",
            )
        dest = Path(dest)
        weights, meta = {  # the file names of each real format
            "native": ("zoengine_adapter.safetensors", "zoengine_adapter.json"),
            "peft-lora": ("adapter_model.safetensors", "adapter_config.json"),
            "gguf": ("model.gguf", "zoengine_export.json"),
        }.get(fmt, ("model.safetensors", "config.json"))
        with replacing_dir(dest, force) as new:
            new.mkdir()
            atomic_write_json(
                new / meta,
                {"format": fmt, "base_model": self.config.model.name, "demo": True, "checkpoint": checkpoint},
            )
            (new / weights).write_bytes(b"\0" * (4096 if fmt != "merged" else 65536))
        return [dest / meta, dest / weights]

    @classmethod
    def resume_from(cls, run_dir: Path, **kwargs: Any) -> DemoRun:
        """Continue a stopped run after its last checkpoint."""
        ckpt = Path(run_dir) / "checkpoint.json"
        if not ckpt.exists():
            raise CheckpointError(
                f"no checkpoint in {run_dir}", hint="only runs stopped with save can resume"
            )
        step = int(json.loads(ckpt.read_text(encoding="utf-8"))["step"])
        return cls(
            RunConfig.load(Path(run_dir) / "config.toml"),
            run_dir=Path(run_dir),
            start_step=step,
            **kwargs,
        )

    # --- the scripted loop -----------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        """Log, then enqueue; when the queue is full the oldest event goes (never block)."""
        if self.fixed_time is not None:
            object.__setattr__(event, "time", self.fixed_time)
        append_jsonl(self.run_dir / "metrics.jsonl", event.to_record())
        while True:
            try:
                self._events.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._events.get_nowait()
                except queue.Empty:
                    pass

    def _set_status(self, status: str, message: str = "") -> None:
        self._status = status
        self._publish(StatusChanged(status=status, message=message))
        self._write_state()

    def _main(self) -> None:
        from zoengine.rundir import acquire_lock

        try:  # hold the run directory's lock like the engine, so the runs list sees a live run
            lock = acquire_lock(self.run_dir, timeout=0.1)
        except ZOError:
            lock = None
        try:
            self._set_status("loading", f"loading {self.config.model.name}")
            time.sleep(self.load_seconds)
            self._publish(self._info())
            self._publish(LogMessage(level="info", text="demo engine: scripted losses, no model is trained"))
            self._set_status("running", "resumed" if self.start_step else "training")
            self._loop()
        except Exception as exc:  # the UI shows this; the thread must end either way
            self._publish(LogMessage(level="error", text=str(exc)))
            self._set_status("failed", str(exc))
        finally:
            if lock is not None:
                lock.release()

    def _info(self) -> RunInfo:
        from zoengine.tasks import DEFAULT_SIZES  # unset sizes: the engine's defaults (no data here)

        t = self.config.task
        return RunInfo(
            model=self.config.model.name,
            total_params=134_515_008,
            trainable_params=1_327_104 if self.config.adapter.method != "full" else 134_515_008,
            n_train=t.n_train if t.n_train is not None else DEFAULT_SIZES["n_train"],
            n_dev=t.n_dev if t.n_dev is not None else DEFAULT_SIZES["n_dev"],
            n_test=t.n_test if t.n_test is not None else DEFAULT_SIZES["n_test"],
            total_steps=self.config.run.steps,
            details={
                "device": "cpu",
                "dtype": "float32",
                "demo": True,
                "forward_schedule": self._forward_schedule(),
            },
        )

    def _queries(self, step: int) -> int:
        """Queries of 0-based ``step``: an AdaZeta-like step-up, known in advance."""
        return 1 + step // max(1, self.config.run.steps // 3)

    def _forward_schedule(self) -> list[list[int]]:
        out: list[list[int]] = []
        for step in range(self.config.run.steps):
            passes = 2 * self._queries(step)
            if not out or out[-1][1] != passes:
                out.append([step + 1, passes])
        return out

    def _loop(self) -> None:
        """Same phases as the engine: pause/stop, one step, evaluation, checkpoint."""
        cfg = self.config.run
        while self.step < cfg.steps:
            self._wait_if_paused()
            if self._stop.is_set():
                self._finish_stopped()
                return
            if self.fail_at is not None and self.step == self.fail_at:
                raise RuntimeError(f"scripted failure at step {self.step}")
            event = self._step(self.step)
            self.step += 1
            self._publish(event)
            if self._eval_now.is_set() or (cfg.eval_every and self.step % cfg.eval_every == 0):
                self._eval_now.clear()
                self._publish_dev_eval()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self._checkpoint()
        self._checkpoint()
        self._publish(self._eval("test"))
        self._set_status("finished", f"finished {self.step} steps")

    def _wait_if_paused(self) -> None:
        if not self._running.is_set():
            self._set_status("paused")
            while not self._running.wait(0.05):
                if self._eval_now.is_set():  # evaluate now: at once, still paused
                    self._eval_now.clear()
                    self._set_status("paused", "evaluating dev")
                    self._publish_dev_eval()
                    self._set_status("paused", "dev evaluated")
            if not self._stop.is_set():
                self._set_status("running", "resumed")

    def _finish_stopped(self) -> None:
        if self._save_on_stop:
            self._checkpoint()
            self._set_status("stopped", f"stopped at step {self.step}")
        else:
            self._set_status("stopped", "stopped without saving")

    def _loss(self, step: int) -> float:
        base = 0.25 + 0.45 * math.exp(-step / max(1.0, self.config.run.steps / 4))
        return base + self._rng.gauss(0.0, 0.03)

    def _step(self, step: int) -> StepLogged:
        started = time.perf_counter()
        deadline = started + self.work_seconds
        while time.perf_counter() < deadline:  # Python-level work, like a real step's overhead
            sum(i * i for i in range(200))
        time.sleep(self.step_delay)
        q = self._queries(step)
        grads = [self._rng.gauss(0.0, 1.0 / (1 + step / 100)) for _ in range(q)]
        self._forward_passes += 2 * q  # two-point estimate: two forwards per query
        extra: dict[str, Any] = {"q_k": q}
        if self.config.adapter.method == "sora":
            extra.update(self._sora_extra(step))
        return StepLogged(
            step=step + 1,
            loss=self._loss(step),
            lr=self.config.optimizer.lr if self.config.optimizer.lr is not None else 1e-3,  # auto: nominal
            projected_grads=grads,
            queries=q,
            forward_passes=self._forward_passes,
            tokens=(step + 1) * self.config.run.batch_size * self.config.model.max_length,
            seconds=time.perf_counter() - started,
            extra=extra,
        )

    def _sora_extra(self, step: int) -> dict[str, Any]:
        frac = min(0.9, step / max(1, self.config.run.steps))
        modules = {
            f"layers.{i}.{m}": {
                "sparsity": round(min(1.0, frac * (0.6 + 0.1 * i)), 3),
                "rank": max(1, 8 - i - int(8 * frac)),
            }
            for i in range(3)
            for m in ("q_proj", "v_proj")
        }
        return {"gate_sparsity": round(frac, 3), "effective_rank": 8 * (1 - frac), "per_module": modules}

    def _publish_dev_eval(self) -> None:
        """A dev evaluation, and a best checkpoint when it improved (as the engine does)."""
        best = self.best_dev_accuracy
        self._publish(self._eval("dev"))
        if self.best_dev_accuracy != best:
            path = self.run_dir / "best.json"
            atomic_write_json(path, {"step": self.step, "dev_accuracy": self.best_dev_accuracy})
            self._publish(CheckpointSaved(step=self.step, path=str(path), best=True))

    def _eval(self, split: str) -> EvalDone:
        for done in range(EVAL_BATCHES if self.eval_seconds else 1):  # as the engine: 0 of N first
            self._publish(EvalProgress(step=self.step, split=split, done=done, total=EVAL_BATCHES, examples=64))
            time.sleep(self.eval_seconds / EVAL_BATCHES)
        loss = self._loss(self.step)
        acc = round(1.1 - loss, 4)
        if split == "dev" and (self.best_dev_accuracy is None or acc > self.best_dev_accuracy):
            self.best_dev_accuracy = acc
        return EvalDone(step=self.step, split=split, loss=loss, accuracy=acc, examples=64, seconds=0.01)

    def _checkpoint(self) -> None:
        path = self.run_dir / "checkpoint.json"
        atomic_write_json(path, {"step": self.step})
        self._write_state()
        self._publish(CheckpointSaved(step=self.step, path=str(path)))

    def _write_state(self) -> None:
        """``state.json`` in the engine's layout, so ``zoengine.runs`` lists demo runs too."""
        atomic_write_json(
            self.run_dir / "state.json",
            {
                "status": self._status,
                "step": self.step,
                "total_steps": self.config.run.steps,
                "best_dev_accuracy": self.best_dev_accuracy,
                "updated": self.fixed_time or time.time(),
            },
        )
