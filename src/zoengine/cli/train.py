"""``zoengine train`` and ``zoengine resume``: preflight checks, the torchrun launch for ``--nproc``,
and watching the run (progress bar, one summary line, the exit status).

Everything a user can get wrong is refused before the run directory is touched.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from zoengine.cli.flags import EXIT_INTERRUPTED, EXIT_USAGE, build_config
from zoengine.config import RunConfig
from zoengine.errors import ZOError


def _watch(run: Any, quiet: bool) -> int:
    """Run in a thread and draw a progress bar (ETA, loss, dev accuracy) until it ends."""
    import queue

    from tqdm import tqdm

    from zoengine.events import (
        TERMINAL_STATUSES,
        EvalDone,
        EvalProgress,
        LogMessage,
        RunInfo,
        RunStatus,
        StatusChanged,
        StepLogged,
    )

    bar = None
    postfix: dict[str, str] = {}
    interrupted = False
    run.start()
    try:
        while True:
            try:
                ev = run.events.get(timeout=0.5)
            except queue.Empty:
                if not run.is_alive:
                    break
                continue
            if isinstance(ev, RunInfo):
                print(
                    f"model {ev.model}: {ev.total_params:,} params, {ev.trainable_params:,} trainable; "
                    f"train/dev/test {ev.n_train}/{ev.n_dev}/{ev.n_test}; run dir {run.run_dir}",
                    file=sys.stderr,
                )
                if not quiet:
                    bar = tqdm(
                        total=ev.total_steps,
                        initial=run.step,
                        unit="step",
                        dynamic_ncols=True,
                        file=sys.stderr,
                    )
            elif isinstance(ev, StepLogged):
                postfix["loss"] = f"{ev.loss:.4f}"
                if ev.queries != 1:
                    postfix["Q"] = str(ev.queries)
                if bar is not None:
                    bar.set_postfix(postfix, refresh=False)
                    bar.update(ev.step - bar.n)
            elif isinstance(ev, EvalProgress):  # a long evaluation: say so, not a frozen bar
                postfix["evaluating"] = f"{ev.split} {ev.done}/{ev.total} batches"
                if bar is not None:
                    bar.set_postfix(postfix)
            elif isinstance(ev, EvalDone):
                postfix.pop("evaluating", None)
                postfix[f"{ev.split}_acc"] = f"{ev.accuracy:.3f}"
                msg = f"step {ev.step}: {ev.split} loss {ev.loss:.4f} accuracy {ev.accuracy:.4f} ({ev.examples} examples)"
                (bar.write(msg) if bar is not None else print(msg, file=sys.stderr))
            elif isinstance(ev, LogMessage) and (
                ev.level not in ("info", "error") or ev.text.startswith("data: ")
            ):
                # errors are printed once, at the end; "data: " notes say how the splits were sized
                text = (
                    f"{ev.level}: {ev.text}"
                    if ev.level != "info"
                    else f"note: {ev.text.removeprefix('data: ')}"
                )
                (bar.write(text) if bar is not None else print(text, file=sys.stderr))
            elif isinstance(ev, StatusChanged) and ev.status in TERMINAL_STATUSES:
                break
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)
        run.stop(save=True)
    finally:
        run.join()
        if bar is not None:
            bar.close()
    if run.status == RunStatus.FAILED:
        print(f"error: {run.error}", file=sys.stderr)
        return EXIT_USAGE if run.error_is_user else 1
    if run.status == RunStatus.DIVERGED:  # the guard gave up: one line, exit 1
        print(f"error: {run.error}", file=sys.stderr)
        return 1
    summary = f"{run.status}: {run.step} steps, run dir {run.run_dir}"
    if run.best_dev_accuracy is not None:
        summary += f", best dev accuracy {run.best_dev_accuracy:.4f}"
    if run.test_result:
        summary += f", test accuracy {run.test_result['accuracy']:.4f}"
        if run.test_result.get("checkpoint"):  # name what was tested: best (step N) or last
            summary += f" (checkpoint {run.test_result['checkpoint']}, step {run.test_result.get('step')})"
    print(summary)
    return EXIT_INTERRUPTED if interrupted else 0


def check_output_dir(run_dir: Path, field: str = "run.output_dir", *, new_run: bool = True) -> None:
    """Refuse an output folder the run could not write, before anything is written."""
    from zoengine.checkpoint import has_resume_point
    from zoengine.errors import CheckpointError
    from zoengine.paths import check_writable
    from zoengine.rundir import RunBusy, is_locked

    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"a file is in the way (not a folder): {run_dir}", field=field)
    if new_run and (run_dir / "config.toml").exists():
        if is_locked(run_dir):  # a live writer: refuse without touching its run
            raise RunBusy(f"{run_dir} is being written by another process", field="run")
    if new_run and (run_dir / "config.toml").exists() and has_resume_point(run_dir):
        # (a run that died before its first checkpoint is started afresh by the engine)
        raise CheckpointError(
            f"folder already holds a run: {run_dir} (continue it with `zoengine resume {run_dir}`, "
            "or choose another --output)",
            field=field,
        )
    check_writable(run_dir, field)


def _check_model_name(name: str) -> None:
    """The model name is a zoo model, an existing local model or a well-formed hub id (no download)."""
    from zoengine import assets
    from zoengine.models import resolve_source

    if name in getattr(assets, "CATALOGUE", {}):
        if assets.get_asset(name).kind != "model":
            resolve_source(name)  # raises the one-line "is a data set, not a model"
        return
    source, where, _, _ = resolve_source(name)
    if source == "hub":  # only its config (a few kB; cached for the engine): is the id reachable?
        import transformers

        from zoengine.errors import ModelError
        from zoengine.models import _zoo_names

        transformers.logging.set_verbosity_error()
        try:
            transformers.AutoConfig.from_pretrained(where)
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load {name!r} from the hub (offline or unknown id); "
                f"zoo models that work offline: {', '.join(_zoo_names())}",
                field="model.name",
            ) from exc


def _preflight(cfg: RunConfig) -> tuple[Path, Any]:
    """Everything a user can get wrong is refused here, before the run directory is touched:
    the model name and device, the output folder and the data (returned, so it is read once)."""
    from zoengine.engine import new_run_dir
    from zoengine.models import resolve_device
    from zoengine.tasks import load_task

    _check_model_name(cfg.model.name)
    resolve_device(cfg.model.device)
    run_dir = new_run_dir(cfg)
    if _rank() == 0:  # under torchrun the other ranks never write the folder (rank 0 may be creating it)
        check_output_dir(run_dir)
    task = load_task(cfg.task)
    if not task.train:
        raise ZOError("the training split is empty", field="task.n_train")
    return run_dir, task


def _rank() -> int:
    """This process's rank under torchrun (0 without it)."""
    return int(os.environ.get("RANK", "0") or 0)


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _launch(nproc: int, argv: list[str]) -> int:
    """Re-run this command as ``nproc`` ranks under torchrun (python -m torch.distributed.run);
    torchrun ends every rank when one fails, and its exit status is returned."""
    import subprocess

    if nproc < 1:
        raise ZOError(f"must be >= 1 (got {nproc})", field="--nproc")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "zoengine", *argv]
    print(f"launching {nproc} processes: {' '.join(cmd[1:])}", file=sys.stderr)
    proc = subprocess.Popen(cmd)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the ranks got the Ctrl-C too: they stop and save; wait for them
            continue


def _strip_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _finish_rank(code: int) -> int:
    """Leave the torchrun job cleanly (a no-op in a single process).

    After a run that ended well every rank meets at a barrier, then destroys the process group.
    A worker then leaves with ``os._exit``: Python's interpreter teardown, with gloo's threads
    still about, aborted a finished rank (SIGABRT, "terminate called without an active
    exception") in about 1 of 30 two-rank runs here, and torchrun then reports the whole job
    as failed. Everything a rank writes is on disk before this point (atomic writes)."""
    import torch.distributed

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return code
    if code == 0:
        try:
            torch.distributed.barrier()
        except Exception:  # a peer that failed has already said why; leave anyway
            code = 1
    torch.distributed.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_train(args: argparse.Namespace) -> int:
    from zoengine.engine import Run

    cfg = build_config(args)
    if args.dry_run:
        print(cfg.to_toml(), end="")
        return 0
    nproc = args.nproc if args.nproc is not None else cfg.run.nproc  # the flag wins over run.nproc
    if nproc < 1:
        raise ZOError(f"must be >= 1 (got {nproc})", field="--nproc")
    run_dir, task = _preflight(cfg)
    if nproc > 1 and not _launched():  # every rank must write to the folder checked here
        argv = _strip_nproc(list(args.argv))
        return _launch(nproc, [*argv, "--output", str(run_dir)] if cfg.run.output_dir is None else argv)
    run = Run(cfg, run_dir)
    run.task = task
    return _finish_rank(_watch(run, args.quiet or _rank() != 0))


def cmd_resume(args: argparse.Namespace) -> int:
    from zoengine.engine import Run

    run = Run.resume_from(args.run_dir)
    check_output_dir(run.run_dir, "run", new_run=False)
    if (args.nproc or 1) > 1 and not _launched():
        return _launch(args.nproc, _strip_nproc(list(args.argv)))
    return _finish_rank(_watch(run, args.quiet or _rank() != 0))
