"""Events and run statuses: old logs still replay, and a status is its plain string on disk."""

from __future__ import annotations

import json

from zoengine.events import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    CheckpointSaved,
    EvalDone,
    RunStatus,
    StatusChanged,
    event_from_record,
)


def test_records_with_fields_older_versions_wrote_still_replay() -> None:
    # EvalDone.seconds and CheckpointSaved.path were written until nothing read them
    old_eval = {"event": "eval", "time": 1.0, "step": 3, "split": "dev", "loss": 0.5, "accuracy": 0.75,
                "examples": 8, "seconds": 2.5, "_crc": 123}  # fmt: skip
    old_ckpt = {"event": "checkpoint", "time": 2.0, "step": 4, "path": "/r/checkpoints/last", "best": False}
    assert event_from_record(old_eval) == EvalDone(step=3, split="dev", loss=0.5, accuracy=0.75, examples=8, time=1.0)
    assert event_from_record(old_ckpt) == CheckpointSaved(step=4, best=False, time=2.0)
    assert event_from_record({"event": "no-such-kind", "step": 1}) is None


def test_a_status_is_its_plain_string() -> None:
    status = RunStatus.DIVERGED
    assert status == "diverged" and f"run {status}" == "run diverged" and str(status) == "diverged"
    record = StatusChanged(status=status, message="m", time=0.0).to_record()
    assert json.dumps(record, sort_keys=True) == json.dumps(
        {"event": "status", "time": 0.0, "status": "diverged", "message": "m"}, sort_keys=True
    )
    replayed = event_from_record(json.loads(json.dumps(record)))
    assert replayed == StatusChanged(status="diverged", message="m", time=0.0)
    assert "diverged" in TERMINAL_STATUSES and "paused" in LIVE_STATUSES
    assert set(TERMINAL_STATUSES).isdisjoint(LIVE_STATUSES)
    assert {"interrupted", "corrupt"} <= set(RunStatus)  # what zoengine.runs lists a dead or damaged run as
