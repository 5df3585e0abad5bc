"""The lr tuner on a tiny model: same batches per candidate, a paired significance test, divergence
never chosen, a refusal when the budget cannot separate candidates, cache and --write."""

from __future__ import annotations

import math
import tomllib

import pytest

from zoengine.cli import main
from zoengine.config import RunConfig
from zoengine.tune import TuneError, cache_key, cached_result, lr_grid, tune


@pytest.fixture
def tune_cfg(tiny_llama_dir, sentiment_csv, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOENGINE_CACHE", str(tmp_path / "cache"))
    cfg = RunConfig()
    cfg.model.name = str(tiny_llama_dir)
    cfg.task.name, cfg.task.path = "file", str(sentiment_csv)
    cfg.task.template = "{text} it was"
    cfg.task.label_words = ["great", "terrible"]
    cfg.task.n_train, cfg.task.n_dev, cfg.task.n_test = 120, 64, 40
    cfg.adapter.method = "full"
    cfg.optimizer.name = "mezo_sgd"
    cfg.run.batch_size = 16
    return cfg


def test_lr_grid_is_log_spaced_around_the_centre() -> None:
    grid = lr_grid(1e-3, 5)
    assert grid == sorted(grid) and len(grid) == 5 and grid[2] == pytest.approx(1e-3)
    ratios = [b / a for a, b in zip(grid, grid[1:], strict=False)]
    assert all(r == pytest.approx(math.sqrt(10), rel=0.02) for r in ratios)


def test_tune_picks_a_learning_candidate_and_never_a_diverging_one(tune_cfg) -> None:
    lrs = [1e-6, 3e-3, 2e-2]
    seen: list[tuple[int, int]] = []
    result = tune(tune_cfg, steps=12, lrs=lrs, dev_examples=64, progress=lambda i, c, s: seen.append((i, s)))
    by_lr = {c.lr: c for c in result.candidates}
    assert by_lr[2e-2].diverged and len(by_lr[2e-2].train_losses) < 12  # NaN: stopped, never chosen
    chosen = result.candidates[result.chosen]
    assert chosen.lr == 3e-3 and not chosen.diverged
    assert chosen.decrease > 2 * chosen.stderr > 0  # significant on the paired test
    # a tiny lr can pass the z-test (a deterministic, minute change) but is below the minimum effect
    assert 0 <= by_lr[1e-6].decrease < 0.005 * by_lr[1e-6].dev_loss_before
    # every candidate saw the same batches and perturbations: equal losses at the first query
    firsts = {round(c.train_losses[0], 6) for c in result.candidates if c.train_losses}
    assert len(firsts) == 1
    assert (0, 0) in seen and (1, 12) in seen  # progress per candidate and step
    # cached per (model, task, adapter, optimizer, batch) for the app's "use tuned lr"
    cached = cached_result(tune_cfg)
    assert cached is not None and cached.lr == result.lr and cached.key == cache_key(tune_cfg)
    other = tune_cfg.copy()
    other.run.batch_size = 8
    assert cached_result(other) is None


def test_tune_refuses_when_the_budget_cannot_separate_candidates(tune_cfg) -> None:
    with pytest.raises(TuneError, match="budget too small"):
        tune(tune_cfg, steps=2, lrs=[1e-9, 1e-8], dev_examples=32)


def test_tune_refuses_when_everything_diverges(tune_cfg) -> None:
    with pytest.raises(TuneError, match="every candidate diverged"):
        tune(tune_cfg, steps=6, lrs=[0.1, 1.0], dev_examples=32)


def test_cli_tune_writes_the_tuned_config_and_refuses_to_overwrite(tune_cfg, tmp_path, capsys) -> None:
    cfg_path = tmp_path / "run.toml"
    tune_cfg.save(cfg_path)
    out = tmp_path / "tuned.toml"
    argv = [
        "tune",
        "--config",
        str(cfg_path),
        "--tune-steps",
        "12",
        "--lrs",
        "1e-6,3e-3,2e-2",
        "--write",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "tuned: lr" in text and "training loss per candidate" in text
    written = tomllib.loads(out.read_text())
    # the 12-step pick 3e-3, discounted for the config's 500-step run: 3e-3 × √(12/500)
    assert tune_cfg.run.steps == 500 and "sweep pick 0.003" in text
    assert written["optimizer"]["lr"] == pytest.approx(3e-3 * math.sqrt(12 / 500), rel=2e-3)
    before = out.read_text()
    assert main(argv) == 2  # exists: not overwritten without --force
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --write: {out} exists; choose another path or add --force"]
    assert out.read_text() == before
    assert main(["tune", "--config", str(cfg_path), "--tune-steps", "1"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: tune.steps:")


def test_the_pick_is_discounted_by_one_over_root_run_length() -> None:
    from zoengine.tune import TuneResult, apply_result

    result = TuneResult(
        key="k", lr=4e-3, eps=1e-3, chosen=0, steps=20, batch_size=8, dev_examples=96,
        candidates=[], trainable=10, default_lr=1e-3, seconds=1.0,
    )  # fmt: skip
    assert result.lr_for(20) == 4e-3 and result.lr_for(5) == 4e-3  # never above the pick
    assert result.lr_for(80) == pytest.approx(2e-3) and result.lr_for(320) == pytest.approx(1e-3)
    cfg = RunConfig()
    cfg.run.steps = 500
    assert apply_result(cfg, result).optimizer.lr == pytest.approx(4e-3 * math.sqrt(20 / 500), rel=2e-3)
    assert cfg.optimizer.lr is None  # a copy


def test_cache_key_ignores_options_given_at_their_default() -> None:
    a = RunConfig()
    a.adapter.method, a.optimizer.name = "lora", "mezo_sgd"
    b = a.copy()
    b.set("adapter.r", 8)  # LoRA's default rank
    b.set("optimizer.q", 1)  # MeZO's default query count
    assert cache_key(a) == cache_key(b)
    b.set("adapter.r", 4)
    assert cache_key(a) != cache_key(b)


def test_cache_key_depends_on_the_adapted_blocks() -> None:
    """``adapter.layers`` picks another trainable set: another sweep. Spellings of the same spec
    and "all" (the default: every block) key alike, so caches from before the option still hit."""
    a = RunConfig()
    a.adapter.method, a.optimizer.name = "lora", "mezo_sgd"
    everything = cache_key(a)
    a.set("adapter.layers", "all")
    assert cache_key(a) == everything
    a.set("adapter.layers", "top:6")
    top6 = cache_key(a)
    assert top6 != everything
    a.set("adapter.layers", " TOP: 6 ")
    assert cache_key(a) == top6
    a.set("adapter.layers", "top:4")
    assert cache_key(a) not in (top6, everything)
    a.set("adapter.layers", "0-3")
    assert cache_key(a) not in (top6, everything)
    a.set("run.share_prefix", "false")  # the same losses, shared or not: the same sweep
    b = a.copy()
    b.set("run.share_prefix", "true")
    assert cache_key(a) == cache_key(b)
