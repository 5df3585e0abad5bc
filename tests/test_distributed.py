"""Data- and query-parallel ZO on 2 CPU processes (gloo) equal one process over the same batches.

The ranks are started with ``torch.multiprocessing.spawn`` on a free port of 127.0.0.1 and join
through ``zoengine.distributed.from_env`` (the torchrun environment variables), as under torchrun.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from test_engine import NEG, POS, tiny_config
from zoengine.distributed import Dist, QuerySplit, from_env, shard_bounds
from zoengine.engine import batch_indices
from zoengine.io import read_jsonl
from zoengine.optim.zo_adam import ZOAdam
from zoengine.optim.zo_adamu import ZOAdaMU
from zoengine.optim.zo_sgd import AdaZeta, MezoSGD

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")

N_TRAIN, BATCH, STEPS = 13, 5, 6  # 13 examples: the epoch's last batch is short (3), shards 3+2 / 2+1

# (name, optimizer factory, parallel mode)
CASES = {
    "mezo_sgd-data": (lambda ps: MezoSGD(ps, lr=1e-3, eps=1e-3, seed=3), "data"),
    "zo_adam-data": (lambda ps: ZOAdam(ps, lr=1e-3, eps=1e-3, seed=3), "data"),
    "zo_adamu-data": (lambda ps: ZOAdaMU(ps, lr=1e-3, eps=1e-3, T1=2, T2=4, T3=STEPS, seed=3), "data"),
    "mezo_sgd_q3-query": (lambda ps: MezoSGD(ps, lr=1e-3, eps=1e-3, q=3, seed=3), "query"),
    "mezo_sgd_q3_inplace-query": (
        lambda ps: MezoSGD(ps, lr=1e-3, eps=1e-3, q=3, seed=3, restore="inplace"),
        "query",
    ),
    "adazeta-query": (
        lambda ps: AdaZeta(
            ps, lr=1e-3, eps=1e-3, alpha=2.0, beta=1.0, q_max=7, min_q=3, steps_per_epoch=1, total_steps=STEPS, seed=3
        ),
        "query",
    ),
    "zo_adam_q4-query": (lambda ps: ZOAdam(ps, lr=1e-3, eps=1e-3, q=4, seed=3), "query"),
}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(N_TRAIN, 8, generator=g), torch.randint(0, 3, (N_TRAIN,), generator=g)


def _model(width: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.Tanh(), torch.nn.Linear(width, 3))


WIDE = 1024  # 66x the parameters of the default width


def train(case: str, dist: Dist, width: int = 16) -> tuple[list[float], dict[str, torch.Tensor], int]:
    """STEPS optimizer steps of ``case``; (per-step losses, final tensors, bytes this rank sent)."""
    factory, _ = CASES[case]
    x, y = _data()
    model = _model(width)
    opt = factory(list(model.parameters()))
    opt.query_split = dist.query_split()
    sent0 = dist.bytes_sent
    losses = []
    for step in range(STEPS):
        idx = dist.shard(batch_indices(step, N_TRAIN, BATCH, seed=1))

        def local(idx: list[int] = idx) -> torch.Tensor:
            return F.cross_entropy(model(x[idx]), y[idx])  # mean over this rank's shard

        losses.append(float(opt.step(dist.reduce_closure(local, len(idx)))))
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}, dist.bytes_sent - sent0


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    results = {}
    base = from_env(timeout_s=60)
    try:
        for case, (_, mode) in CASES.items():
            base.mode = mode
            results[case] = train(case, base)
        for case in ("mezo_sgd-data", "mezo_sgd_q3-query"):
            base.mode = CASES[case][1]
            results[f"{case}-wide"] = train(case, base, width=WIDE)
    finally:
        torch.save({"rank": rank, "backend": base.backend, "results": results}, Path(out) / f"rank{rank}.pt")
        base.close()
    _leave_worker()


def _leave_worker() -> None:
    """End a finished worker with ``os._exit``, as the CLI's ``_finish_rank`` does: Python's
    interpreter teardown with gloo's threads about aborts now and then (SIGABRT, "terminate called
    without an active exception", ~1 in 30 runs), which ``spawn`` reports as a failed rank. A
    worker that raised is left to ``spawn``, which records the error."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("dist")
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _single(case: str) -> tuple[list[float], dict[str, torch.Tensor], int]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(case, Dist(mode=CASES[case][1]))
    finally:
        torch.set_num_threads(threads)


def test_shard_bounds_cover_the_batch_once():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            parts = [shard_bounds(n, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
            sizes = [b - a for a, b in parts]
            assert max(sizes) - min(sizes) <= 1


def test_single_process_dist_is_a_no_op():
    d = Dist()
    assert not d.enabled and d.is_main and d.query_split() is None
    assert d.shard([1, 2, 3]) == [1, 2, 3]
    assert d.all_reduce_sum([1.5, 2.0]) == [1.5, 2.0]
    fn = lambda: torch.tensor(1.0)  # noqa: E731
    assert d.reduce_closure(fn, 3) is fn


def test_backend_is_gloo_for_cpu_models():
    from zoengine.distributed import choose_backend

    assert choose_backend("cpu") == "gloo"
    if not torch.cuda.is_available():
        assert choose_backend("auto") == "gloo"


def test_query_split_round_robin():
    split = QuerySplit(Dist(rank=1, world_size=2))
    assert [j for j in range(5) if split.owns(j, 5)] == [1, 3]


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_equal_one_process(two_ranks, case):
    """Per-step losses and final trainable tensors of 2 gloo ranks = 1 process (float32, 1e-6)."""
    assert two_ranks[0]["backend"] == "gloo"
    ref_losses, ref_tensors, _ = _single(case)
    for r in two_ranks:
        losses, tensors, sent = r["results"][case]
        assert losses == pytest.approx(ref_losses, abs=1e-6, rel=0)
        for name, ref in ref_tensors.items():
            assert torch.allclose(tensors[name], ref, atol=1e-6, rtol=0), (case, r["rank"], name)
        assert sent > 0
        if CASES[case][1] == "query":  # same batch, same forwards: bit-identical to 1 process
            assert losses == ref_losses
            assert all(torch.equal(tensors[k], v) for k, v in ref_tensors.items())
    # every rank applied the identical update: the ranks agree bit for bit
    a, b = (r["results"][case] for r in two_ranks)
    assert a[0] == b[0]
    assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_bytes_per_step_are_a_few_floats_per_query(two_ranks):
    _, _, sent = two_ranks[0]["results"]["mezo_sgd-data"]
    assert sent == STEPS * 2 * 16  # q = 1: one (sum, count) float64 pair per forward
    _, _, sent_q = two_ranks[0]["results"]["mezo_sgd_q3-query"]
    assert sent_q == STEPS * 2 * 24  # q = 3 over 2 ranks: 2 rows of (seed, l+, l-) per step


def test_bytes_per_step_do_not_depend_on_the_model_size(two_ranks):
    n_narrow = sum(p.numel() for p in _model().parameters())
    n_wide = sum(p.numel() for p in _model(WIDE).parameters())
    assert n_wide > 50 * n_narrow
    for r in two_ranks:
        for case in ("mezo_sgd-data", "mezo_sgd_q3-query"):
            assert r["results"][f"{case}-wide"][2] == r["results"][case][2], (case, r["rank"])


# --- the engine on 2 ranks: only rank 0 writes, losses equal 1 process, a failing rank stops all ----


@pytest.fixture
def sentiment_csv(tmp_path):
    path = tmp_path / "sentiment.csv"
    rows = ["text,label"] + [f"{t},positive" for t in POS * 3] + [f"{t},negative" for t in NEG * 3]
    path.write_text("\n".join(rows) + "\n")
    return path


def _engine_worker(rank: int, world: int, port: int, cfg, opts: dict, out: str) -> None:
    from zoengine.engine import Run
    from zoengine.events import EvalDone, EvalProgress, StepLogged

    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        ZO_DIST_TIMEOUT="20",
    )
    run = Run.resume_from(cfg) if opts.get("resume") else Run(cfg)
    fail_at, stop_at = opts.get("fail_at", 0), opts.get("stop_at", 0)
    evals: list[dict] = []  # what this rank's evaluations returned (only rank 0 writes metrics)
    run.subscribe(lambda e: evals.append(e.to_record()) if isinstance(e, EvalDone | EvalProgress) else None)
    if opts.get("eval_at") and rank == 0:  # "evaluate now" on one rank: every rank joins the evaluation
        run.subscribe(lambda e: run.request_eval() if isinstance(e, StepLogged) and e.step == opts["eval_at"] else None)
    if stop_at and rank == 0:  # a stop request on one rank stops every rank at the same step
        run.subscribe(lambda e: run.stop(save=True) if isinstance(e, StepLogged) and e.step == stop_at else None)
    if fail_at and rank == 1:

        def on_event(e):
            if isinstance(e, StepLogged) and e.step == fail_at:
                def broken(batch):
                    raise RuntimeError("rank 1 ran out of memory (simulated)")

                run.objective.loss = broken

        run.subscribe(on_event)
    import time

    t0 = time.monotonic()
    run.run()
    tensors = {k: v.detach().clone() for k, v in run.handle.trainable_state_dict().items()} if run.handle else {}
    torch.save(
        {"status": str(run.status), "error": run.error, "step": run.step, "run_dir": str(run.run_dir),
         "tensors": tensors, "seconds": time.monotonic() - t0, "evals": evals, "test": run.test_result},
        Path(out) / f"engine{rank}.pt",
    )
    run.dist.close()
    _leave_worker()


def _spawn_engine(cfg, out: Path, **opts) -> list[dict]:
    out.mkdir(exist_ok=True)
    torch.multiprocessing.spawn(_engine_worker, args=(2, _free_port(), cfg, opts, str(out)), nprocs=2, join=True)
    return [torch.load(out / f"engine{r}.pt", weights_only=True) for r in range(2)]


def _last_tensors(run_dir: Path, name: str = "last") -> dict[str, torch.Tensor]:
    from zoengine import checkpoint

    found, _ = checkpoint.find(run_dir, name)
    assert found is not None
    return found.tensors()


def _comm_bytes(parallel: str, queries: int, world: int = 2) -> int:
    """What one rank sends in a step: 16 bytes of stop/evaluate flags, then data-parallel (Σ loss,
    n) float64 per forward + 8 bytes of token count, or query-parallel its (seed, l+, l-) rows."""
    if parallel == "data":
        return 16 + queries * 2 * 16 + 8
    return 16 + -(-queries // world) * 24


def _step_records(run_dir: Path) -> list[dict]:
    from zoengine.io import read_jsonl

    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "step"]


@pytest.mark.parametrize(("optimizer", "parallel"), [("mezo_sgd", "data"), ("adazeta", "query")])
def test_engine_two_ranks_equal_one_process(tiny_llama_dir, sentiment_csv, tmp_path, optimizer, parallel):
    from zoengine.engine import Run

    over = {"optimizer.name": optimizer, "run.parallel": parallel, "run.steps": 6, "run.batch_size": 7}
    if optimizer == "adazeta":
        over.update({"optimizer.lr": 1e-4, "optimizer.q_max": 5, "optimizer.min_q": 3})
    single = Run(tiny_config(tiny_llama_dir, sentiment_csv, tmp_path / "one", **over))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single.run()
    finally:
        torch.set_num_threads(threads)
    assert single.status == "finished", single.error

    ranks = _spawn_engine(tiny_config(tiny_llama_dir, sentiment_csv, tmp_path / "two", **over), tmp_path / "out")
    assert [r["status"] for r in ranks] == ["finished", "finished"], [r["error"] for r in ranks]
    run_dir = Path(ranks[0]["run_dir"])
    assert ranks[1]["run_dir"] == ranks[0]["run_dir"]
    one, two = _step_records(single.run_dir), _step_records(run_dir)
    assert [r["step"] for r in two] == list(range(1, 7))  # one writer: each step logged once
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-6, rel=0)
    assert [r["extra"]["comm_bytes"] for r in two] == [_comm_bytes(parallel, r["queries"]) for r in two]
    assert [r["tokens"] for r in two] == [r["tokens"] for r in one]  # the whole batch's, not rank 0's shard
    ref, last = _last_tensors(single.run_dir), _last_tensors(run_dir)  # (the test loads `best` into memory)
    best = _last_tensors(run_dir, "best")
    for k, v in ref.items():
        assert torch.allclose(last[k], v, atol=1e-6, rtol=0), k
        # every rank took its share of the test on the checkpoint rank 0 saved as best
        assert torch.equal(ranks[1]["tensors"][k], best[k]) and torch.equal(ranks[0]["tensors"][k], best[k]), k
    assert (run_dir / "checkpoints" / "last").is_dir()
    assert "resume with" not in str(ranks[0]["error"])


def _evals(records: list[dict], event: str = "eval") -> list[dict]:
    return [r for r in records if r["event"] == event]


def test_engine_sharded_evaluation_equals_one_process(tiny_llama_dir, sentiment_csv, tmp_path):
    """Dev and test evaluations of a 2-rank run: each rank scores its shard (dev 11 = 6 + 5 examples,
    test 1 = 1 + 0) and every rank gets the 1-process result (loss within 1e-6, accuracy exact); an
    evaluation asked for on rank 0 alone runs on both ranks after the same step."""
    from zoengine.engine import Run
    from zoengine.events import EvalDone, EvalProgress, StepLogged

    # query-parallel training is bit-identical to 1 process: the evaluations differ only by the shards
    over = {
        "optimizer.name": "mezo_sgd", "optimizer.q": 2, "run.parallel": "query", "run.steps": 4,
        "run.batch_size": 7, "task.n_dev": 11, "task.n_test": 1, "run.eval_every": 3, "run.eval_batch_size": 4,
    }
    single = Run(tiny_config(tiny_llama_dir, sentiment_csv, tmp_path / "one", **over))
    seen: list[dict] = []
    single.subscribe(lambda e: seen.append(e.to_record()) if isinstance(e, EvalDone | EvalProgress) else None)
    single.subscribe(lambda e: single.request_eval() if isinstance(e, StepLogged) and e.step == 1 else None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single.run()
    finally:
        torch.set_num_threads(threads)
    assert single.status == "finished", single.error

    ranks = _spawn_engine(
        tiny_config(tiny_llama_dir, sentiment_csv, tmp_path / "two", **over), tmp_path / "out", eval_at=1
    )
    assert [r["status"] for r in ranks] == ["finished", "finished"], [r["error"] for r in ranks]
    ref = _evals(seen)
    # zero-shot, asked after step 1, eval_every at step 3, the final dev at 4, then the test
    assert [(e["split"], e["step"], e["examples"]) for e in ref] == [
        ("dev", 0, 11), ("dev", 1, 11), ("dev", 3, 11), ("dev", 4, 11), ("test", 4, 1)
    ]
    written = _evals(read_jsonl(Path(ranks[0]["run_dir"]) / "metrics.jsonl"))
    for got in (ranks[0]["evals"], ranks[1]["evals"], written):
        evals = _evals(got)
        assert [(e["split"], e["step"], e["examples"]) for e in evals] == [
            (e["split"], e["step"], e["examples"]) for e in ref
        ]
        assert [e["loss"] for e in evals] == pytest.approx([e["loss"] for e in ref], abs=1e-6, rel=0)
        assert [e["accuracy"] for e in evals] == [e["accuracy"] for e in ref]
    a, b = (_evals(r["evals"]) for r in ranks)  # the ranks hold the identical all-reduced result
    assert [(e["loss"], e["accuracy"]) for e in a] == [(e["loss"], e["accuracy"]) for e in b]
    assert ranks[0]["test"] == ranks[1]["test"] and ranks[0]["test"]["checkpoint"] == "best"
    assert ranks[0]["test"]["accuracy"] == single.test_result["accuracy"]
    assert ranks[0]["test"]["loss"] == pytest.approx(single.test_result["loss"], abs=1e-6, rel=0)

    # each rank scored only its shard: batches of 4 over 6 / 5 dev examples (2 each, 3 for one
    # process), 1 test example on rank 0 and none on rank 1
    def first_totals(records: list[dict], split: str) -> list[int]:
        return [p["total"] for p in _evals(records, "eval_progress") if p["split"] == split and p["done"] == 0]

    assert first_totals(seen, "dev") == [3] * 4 and first_totals(seen, "test") == [1]
    assert first_totals(ranks[0]["evals"], "dev") == [2] * 4 and first_totals(ranks[0]["evals"], "test") == [1]
    assert first_totals(ranks[1]["evals"], "dev") == [2] * 4 and first_totals(ranks[1]["evals"], "test") == []


def test_engine_one_failing_rank_stops_all_with_a_clear_error(tiny_llama_dir, sentiment_csv, tmp_path):
    cfg = tiny_config(tiny_llama_dir, sentiment_csv, tmp_path / "fail", **{"run.steps": 20})
    ranks = _spawn_engine(cfg, tmp_path / "out", fail_at=2)
    assert ranks[1]["status"] == "failed" and "out of memory (simulated)" in ranks[1]["error"]
    assert ranks[0]["status"] == "failed" and ranks[0]["step"] == 2
    assert "another rank has probably failed" in ranks[0]["error"]
    assert ranks[0]["seconds"] < 60  # the collective timeout (20 s) ended it: no hang


def test_engine_distributed_stop_and_resume_repeat_the_uninterrupted_run(tiny_llama_dir, sentiment_csv, tmp_path):
    over = {"optimizer.name": "zo_adam", "optimizer.lr": 1e-4, "run.steps": 6, "run.batch_size": 7}
    full = _spawn_engine(tiny_config(tiny_llama_dir, sentiment_csv, tmp_path / "full", **over), tmp_path / "o1")
    assert [r["status"] for r in full] == ["finished", "finished"], [r["error"] for r in full]
    part = _spawn_engine(
        tiny_config(tiny_llama_dir, sentiment_csv, tmp_path / "part", **over), tmp_path / "o2", stop_at=3
    )
    assert [(r["status"], r["step"]) for r in part] == [("stopped", 3), ("stopped", 3)]
    run_dir = Path(part[0]["run_dir"])
    resumed = _spawn_engine(str(run_dir), tmp_path / "o3", resume=True)
    assert [r["status"] for r in resumed] == ["finished", "finished"], [r["error"] for r in resumed]
    a, b = _step_records(Path(full[0]["run_dir"])), _step_records(run_dir)
    assert [r["step"] for r in b] == list(range(1, 7))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # bit-identical
    ta, tb = _last_tensors(Path(full[0]["run_dir"])), _last_tensors(run_dir)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_cli_nproc_launches_torchrun(tiny_llama_dir, sentiment_csv, tmp_path):
    import subprocess
    import sys

    cfg = tiny_config(tiny_llama_dir, sentiment_csv, tmp_path / "cli", **{"run.steps": 4, "run.batch_size": 7})
    toml = tmp_path / "run.toml"
    toml.write_text(cfg.to_toml())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "zoengine", "train", "--config", str(toml), "--nproc", "2", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stderr and "finished: 4 steps" in proc.stdout
    recs = _step_records(tmp_path / "cli" / "run")
    assert [r["step"] for r in recs] == [1, 2, 3, 4] and all(r["extra"]["comm_bytes"] > 0 for r in recs)


def test_bench_comm_bytes_do_not_depend_on_the_model_width(tiny_tokenizer, sentiment_csv, tmp_path):
    """bench/bench_distributed.py on two tiny Llamas, one 4x wider (about 10x the parameters): the
    2-rank runs send the same bytes per step, O(Q) floats: data-parallel q = 1 and query-parallel Q = 8."""
    import sys

    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    import bench_distributed

    dirs = []
    for width in (32, 128):
        torch.manual_seed(0)
        cfg = LlamaConfig(
            vocab_size=len(tiny_tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
            bos_token_id=5, eos_token_id=6, tie_word_embeddings=True,
        )
        path = tmp_path / f"tiny-{width}"
        LlamaForCausalLM(cfg).save_pretrained(path)
        tiny_tokenizer.save_pretrained(path)
        dirs.append(path)
    rows = {}
    for path in dirs:
        out = tmp_path / f"{path.name}.json"
        argv = [
            "--model", str(path), "--task", "file", "--steps", "2", "--batch", "8", "--out", str(out),
            "--configs", "dp-2proc-1thread,qp-2proc-1thread", "--set", f"task.path={sentiment_csv}",
            "--set", "task.template={text} it was {label}", "--set", 'task.label_words=["terrible","great"]',
            "--set", 'task.label_map={negative="terrible", positive="great"}',
        ]
        assert bench_distributed.main(argv) == 0
        rows[path.name] = json.loads(out.read_text())["rows"]
    narrow, wide = rows["tiny-32"], rows["tiny-128"]
    assert wide["dp-2proc-1thread"]["total_params"] > 5 * narrow["dp-2proc-1thread"]["total_params"]
    for name in ("dp-2proc-1thread", "qp-2proc-1thread"):
        assert narrow[name]["comm_bytes_per_step_all"] == wide[name]["comm_bytes_per_step_all"], name
    assert narrow["dp-2proc-1thread"]["comm_bytes_per_step_all"] == [_comm_bytes("data", 1)]
    assert narrow["qp-2proc-1thread"]["comm_bytes_per_step_all"] == [_comm_bytes("query", 8)]
