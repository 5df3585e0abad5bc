"""What makes the methods learn in a run a user can wait for: SoRA pruning under ZO, AdaZeta's β in
the paper's regime, run-length-relative settings checked before anything loads, the lr rule."""

from __future__ import annotations

import math

import pytest
import torch
from tests.conftest import make_tiny_llama

from zoengine.adapters import apply_adapter
from zoengine.config import AdapterConfig, OptimizerConfig, RunConfig
from zoengine.errors import ConfigError
from zoengine.optim import build_optimizer, default_lr
from zoengine.optim.calibration import depth_factor
from zoengine.optim.schedules import adazeta_beta, adazeta_beta_note, adazeta_query_count

VOCAB = 64


def _sora_run(steps: int, options: dict, lr: float = 0.05, seed: int = 0):
    """ZO-SGD on a tiny Llama with SoRA; returns (handle, per-step ranks, per-step dead masks)."""
    model = make_tiny_llama(VOCAB, seed=0)
    handle = apply_adapter(model, AdapterConfig(method="sora", options={"r": 4, **options}), seed=seed)
    handle.set_run_length(steps)
    opt = build_optimizer(
        OptimizerConfig(name="mezo_sgd", lr=lr, eps=1e-3),
        handle.param_groups(0.0),
        seed=seed,
        total_steps=steps,
        steps_per_epoch=steps,
    )
    ids = torch.randint(7, VOCAB, (4, 9), generator=torch.Generator().manual_seed(1))
    target = torch.randint(7, VOCAB, (4,), generator=torch.Generator().manual_seed(2))

    def closure() -> torch.Tensor:
        logits = model(ids).logits[:, -1].float()
        return torch.nn.functional.cross_entropy(logits, target)

    ranks, dead = [], []
    for step in range(1, steps + 1):
        with torch.no_grad():
            opt.step(closure)
        handle.after_step(step, lr)
        ranks.append(handle.stats()["total_rank"])
        dead.append(torch.cat([m.g.detach() == 0 for m in handle.adapter_modules.values()]))
    return handle, ranks, dead


def test_sora_prunes_under_zo_with_the_default_schedule_and_dead_gates_stay_dead() -> None:
    steps = 40
    handle, ranks, dead = _sora_run(steps, {})
    dense = math.floor(0.3 * steps)
    full = 4 * len(handle.adapter_modules)
    assert ranks[:dense] == [full] * dense  # dense phase: nothing pruned
    sparsity = handle.stats()["gate_sparsity"]
    assert 0.15 <= sparsity < 1.0  # a clearly non-zero share of the ranks, not all of them
    assert ranks == sorted(ranks, reverse=True)  # never revived: rank only goes down
    for before, after in zip(dead, dead[1:], strict=False):
        assert bool((after | ~before).all())  # a zero gate is zero at every later step
    assert handle.stats()["threshold"] == pytest.approx(0.5 / (steps - dense))


def test_sora_zero_gates_are_not_revived_by_zo_noise_even_with_a_tiny_threshold() -> None:
    # paper mode with λ so small that the prox step could never hold a revived gate at 0
    model = make_tiny_llama(VOCAB, seed=0)
    handle = apply_adapter(model, AdapterConfig(method="sora", options={"r": 4, "lambda": 1e-9}), seed=0)
    mods = list(handle.adapter_modules.values())
    with torch.no_grad():
        mods[0].g[:2] = 0.0
    handle.after_step(1, 1.0)  # the prox step marks them dead
    opt = build_optimizer(
        OptimizerConfig(name="mezo_sgd", lr=1.0, eps=1e-2),
        handle.param_groups(0.0),
        seed=0,
        total_steps=10,
        steps_per_epoch=10,
    )
    ids = torch.randint(7, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    for step in range(2, 8):
        with torch.no_grad():
            opt.step(lambda: model(ids).logits[:, -1].float().pow(2).mean())
        assert bool((mods[0].g[:2] != 0).any())  # the update did move the dead gates' values ...
        handle.after_step(step, 1.0)
        assert torch.equal(mods[0].g[:2], torch.zeros(2))  # ... and the step put them back at 0
    assert handle.stats()["per_module"][handle.targets[0]]["rank"] == 2


def test_sora_rank_and_pruned_export_do_not_depend_on_where_the_run_stopped(tmp_path) -> None:
    from zoengine.adapters import export_adapter

    steps = 30
    handle, ranks, _ = _sora_run(steps, {})
    state = handle.trainable_state_dict()
    # a fresh adapter loaded from the checkpoint reports the same ranks and exports the same ranks
    model2 = make_tiny_llama(VOCAB, seed=0)
    h2 = apply_adapter(model2, AdapterConfig(method="sora", options={"r": 4}), seed=0)
    h2.load_trainable_state_dict(state)
    assert h2.stats()["per_module"] == handle.stats()["per_module"]
    assert h2.stats()["total_rank"] == ranks[-1]
    ids = torch.randint(7, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model2(ids).logits, handle.model(ids).logits, atol=1e-6)
    # after loading, dead gates stay dead under further ZO steps (the mask is rebuilt from g == 0)
    dead = torch.cat([m.g.detach() == 0 for m in h2.adapter_modules.values()])
    alive = torch.cat([m.alive for m in h2.adapter_modules.values()])
    assert torch.equal(alive, ~dead)
    export_adapter(model2, h2, tmp_path / "p", "peft-lora", base_model_id="tiny", base_model_hash="h")
    import json

    cfg = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    exported = {
        k.replace("\\.", ".").removeprefix("base_model.model."): v
        for k, v in cfg.get("rank_pattern", {}).items()
    }
    for name, info in h2.stats()["per_module"].items():
        if info["rank"] > 0:
            assert exported.get(name, cfg["r"]) == info["rank"], name


def test_sora_dense_fraction_is_checked() -> None:
    with pytest.raises(ConfigError, match="adapter.dense_fraction"):
        apply_adapter(make_tiny_llama(VOCAB), AdapterConfig(method="sora", options={"dense_fraction": 1.0}))


# --- AdaZeta --------------------------------------------------------------------------------------


@pytest.mark.parametrize("epochs", [1, 1.5, 2, 3, 5, 10, 24, 100, 1000])
def test_adazeta_beta_stays_in_the_papers_range(epochs: float) -> None:
    beta = adazeta_beta(20, 0.85, epochs)
    assert 0 < beta <= 1
    note = adazeta_beta_note(20, 0.85, epochs, 15)
    raw = math.log(20 / 0.85) / math.log(epochs) if epochs > 1 else 0.0
    assert (note is not None) == (raw > 1)  # clamped exactly when the raw value left (0, 1]
    if epochs >= 24:
        assert beta == pytest.approx(raw)  # long runs keep the authors' derivation
        assert adazeta_query_count(int(epochs * 10) - 1, 10, 0.85, beta, 100) == pytest.approx(20, abs=1)


def test_short_adazeta_run_clamps_beta_and_leaves_a_warning() -> None:
    x = torch.zeros(3)
    opt = build_optimizer(
        OptimizerConfig(name="adazeta", lr=0.1), [{"params": [x]}], seed=0, total_steps=30, steps_per_epoch=10
    )
    assert opt.beta == 1.0  # type: ignore[attr-defined]
    assert opt.notes and "β clamped to 1" in opt.notes[0]  # type: ignore[attr-defined]
    long = build_optimizer(
        OptimizerConfig(name="adazeta", lr=0.1),
        [{"params": [x]}],
        seed=0,
        total_steps=300,
        steps_per_epoch=10,
    )
    assert long.notes == [] and 0 < long.beta < 1  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="optimizer.beta"):
        RunConfig(optimizer=OptimizerConfig(name="adazeta", options={"beta": 1.5})).validate()


def test_engine_logs_the_adazeta_clamp_and_the_query_count(tiny_llama_dir, tmp_path) -> None:
    from zoengine.engine import Run, metrics

    data = tmp_path / "d.csv"
    rows = ["text,label"] + ["great fun movie,great", "awful boring film,terrible"] * 20
    data.write_text("\n".join(rows) + "\n")
    cfg = RunConfig()
    cfg.model.name = str(tiny_llama_dir)
    cfg.task.name, cfg.task.path, cfg.task.template = "file", str(data), "{text} it was"
    cfg.task.label_words = ["great", "terrible"]
    cfg.task.n_train, cfg.task.n_dev, cfg.task.n_test = 16, 8, 8
    cfg.adapter.method = "full"
    cfg.optimizer.name = "adazeta"
    cfg.run.batch_size, cfg.run.steps, cfg.run.eval_every, cfg.run.checkpoint_every = 4, 12, 0, 0
    run = Run(cfg, tmp_path / "run")
    run.run()
    assert run.status == "finished", run.error
    records = metrics(run.run_dir)
    warnings = [r for r in records if r["event"] == "log" and r.get("level") == "warning"]
    assert any("β clamped to 1" in r["text"] for r in warnings)
    queries = [r["queries"] for r in records if r["event"] == "step"]
    # 4 steps per epoch, 3 epochs, β = 1: Q = max(⌊0.85·e⌋, 1) = 1, 1, 1
    assert queries == [1] * 12


# --- settings relative to the run length, refused before anything loads ----------------------------


def test_adamu_paper_preset_fits_a_short_run_and_absolute_phases_are_refused_early() -> None:
    from zoengine.optim import OPTIMIZERS

    preset = {k: v for k, v in OPTIMIZERS["zo_adamu"].preset.items()}
    cfg = RunConfig()
    cfg.optimizer.name = "zo_adamu"
    for key, value in preset.items():
        cfg.set(f"optimizer.{key}", value)
    cfg.run.steps = 60
    cfg.validate()  # fractions of the run: fine for 60 steps
    opt = build_optimizer(
        cfg.optimizer, [{"params": [torch.zeros(2)]}], seed=0, total_steps=60, steps_per_epoch=6
    )
    assert (opt.T1, opt.T2, opt.T3) == (3, 48, 60)  # type: ignore[attr-defined]
    cfg.set("optimizer.T2", 16000)
    with pytest.raises(ConfigError, match=r"optimizer.T2: must be <= T3 \(got T2=16000 > T3=60\)"):
        cfg.validate()  # RunConfig.validate runs before any model or data is loaded


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        ({"optimizer.warmup_steps": 60}, "optimizer.warmup_steps"),
        ({"optimizer.warmup_ratio": 1.0}, "optimizer.warmup_ratio"),
        ({"optimizer.lr": "inf"}, "optimizer.lr"),
        ({"optimizer.eps": "nan"}, "optimizer.eps"),
    ],
)
def test_run_length_settings_are_refused_with_one_line(sets: dict, field: str) -> None:
    cfg = RunConfig()
    cfg.run.steps = 60
    with pytest.raises(ConfigError) as info:
        for k, v in sets.items():
            cfg.set(k, v)
        cfg.validate()
    assert info.value.one_line().startswith(field)


def test_warmup_ratio_scales_with_the_run() -> None:
    from zoengine.optim import make_lr_lambda

    cfg = OptimizerConfig(warmup_ratio=0.1)
    f = make_lr_lambda(cfg, 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    f = make_lr_lambda(cfg, 1000)
    assert f(9) == pytest.approx(0.1) and f(99) == pytest.approx(1.0)


# --- the lr rule ------------------------------------------------------------------------------------


def test_default_lr_shrinks_as_one_over_root_run_length_past_the_reference() -> None:
    from zoengine.optim.calibration import REFERENCE_STEPS, lr_rule_text

    base = default_lr("mezo_sgd", "lora", 2_000_000)
    assert default_lr("mezo_sgd", "lora", 2_000_000, total_steps=REFERENCE_STEPS) == base
    assert default_lr("mezo_sgd", "lora", 2_000_000, total_steps=20) == base  # never above the constant
    assert default_lr("mezo_sgd", "lora", 2_000_000, total_steps=4 * REFERENCE_STEPS) == pytest.approx(base / 2, rel=0.01)
    assert default_lr("zo_adam", "tt", 1000, total_steps=9 * REFERENCE_STEPS) == pytest.approx(
        default_lr("zo_adam", "tt", 1000) / 3, rel=0.01
    )
    assert "√(150/600 steps)" in lr_rule_text("mezo_sgd", "lora", 2_000_000, total_steps=600)


def test_default_lr_scales_with_the_trainable_dimension() -> None:
    # ZO-SGD: the estimator's second-order term grows with tr(H) ∝ d, so lr ∝ 1/d
    assert default_lr("mezo_sgd", "lora", 2_000_000) == pytest.approx(
        default_lr("mezo_sgd", "lora", 1_000_000) / 2, rel=0.01
    )
    # adaptive (sign / Adam-like) updates move every coordinate by ~lr: step norm lr·√d, lr ∝ 1/√d
    assert default_lr("zo_adam", "lora", 4_000_000) == pytest.approx(
        default_lr("zo_adam", "lora", 1_000_000) / 2, rel=0.01
    )
    # sign steps (and ZO-Adam, whose normalised step is no larger) on LoRA use the constant the
    # tuner measured (calibration.json: pick 1.37e-2 at d = 2.44M, /5), 3.6x the derived one
    # ZO-AdaMU keeps
    assert default_lr("zo_sgd_sign", "lora", 2_442_240) == pytest.approx(4.3 / 2_442_240**0.5, rel=0.01)
    assert default_lr("zo_sgd_sign", "lora", 4_000_000) == pytest.approx(
        default_lr("zo_sgd_sign", "lora", 1_000_000) / 2, rel=0.01
    )
    assert default_lr("zo_adam", "sora", 10**6) == default_lr("zo_sgd_sign", "sora", 10**6)
    assert default_lr("zo_sgd_sign", "lora", 10**6) > 3 * default_lr("zo_adamu", "lora", 10**6)
    # momentum: steady-state step is 1/(1-μ) larger
    assert default_lr("zo_sgd_mmt", "tt", 100_000) == pytest.approx(
        default_lr("mezo_sgd", "tt", 100_000) * 0.1, rel=0.01
    )


def test_unset_lr_resolves_to_the_calibrated_default_in_the_engine(tiny_llama_dir, tmp_path) -> None:
    from zoengine.engine import Run, metrics

    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "great fun movie,great\nawful boring film,terrible\n" * 10)
    cfg = RunConfig()
    cfg.model.name = str(tiny_llama_dir)
    cfg.task.name, cfg.task.path, cfg.task.template = "file", str(data), "{text} it was"
    cfg.task.label_words = ["great", "terrible"]
    cfg.task.n_train, cfg.task.n_dev, cfg.task.n_test = 8, 4, 4
    cfg.adapter.method, cfg.adapter.options = "lora", {"r": 2}
    cfg.run.steps, cfg.run.batch_size, cfg.run.eval_every = 2, 4, 0
    assert cfg.optimizer.lr is None
    run = Run(cfg, tmp_path / "run")
    run.run()
    assert run.status == "finished", run.error
    d = run.handle.num_trainable()
    assert run.lr == default_lr("mezo_sgd", "lora", d)
    steps = [r for r in metrics(run.run_dir) if r["event"] == "step"]
    assert steps[0]["lr"] == pytest.approx(run.lr)
    logs = [r["text"] for r in metrics(run.run_dir) if r["event"] == "log"]
    assert any(f"d = {d:,}" in t for t in logs)


def test_depth_factor_weighs_coordinates_by_their_block() -> None:
    """TT's per-coordinate curvature falls with depth (the tt-top15 sweep): an adapter on the top
    half counts as 0.30 of its coordinates, one spread evenly over the stack as all of them."""
    blocks = [(100, (i + 0.5) / 30) for i in range(30)]
    assert depth_factor("tt", blocks) == pytest.approx(1.0, abs=2e-3)
    top, bottom = depth_factor("tt", blocks[15:]), depth_factor("tt", blocks[:15])
    # top-half share of Σw: e^(−κ/2)/(1 + e^(−κ/2)) = 0.148 at κ = 3.5, measured 0.149
    assert top / 2 == pytest.approx(math.exp(-1.75) / (1 + math.exp(-1.75)), rel=0.02)
    assert top + bottom == pytest.approx(2.0, abs=4e-3)
    assert depth_factor("lora", blocks[15:]) == 1.0  # flat: plain c/d
    assert depth_factor("tt", [(10, None)]) == 1.0  # outside the stack: weight 1
    f = depth_factor("tt", blocks[15:])
    assert default_lr("mezo_sgd", "tt", 59_100, depth=f) == pytest.approx(118 / (59_100 * f), rel=0.01)
    assert default_lr("zo_adam", "tt", 59_100, depth=f) == pytest.approx(0.24 / math.sqrt(59_100 * f), rel=0.01)


def test_engine_default_lr_on_the_top_blocks_follows_the_depth_rule(tiny_llama_dir, tmp_path) -> None:
    from zoengine.engine import Run, metrics

    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "great fun movie,great\nawful boring film,terrible\n" * 10)
    lrs = {}
    for layers in (None, "top:1"):
        cfg = RunConfig()
        cfg.model.name = str(tiny_llama_dir)
        cfg.task.name, cfg.task.path, cfg.task.template = "file", str(data), "{text} it was"
        cfg.task.label_words = ["great", "terrible"]
        cfg.task.n_train, cfg.task.n_dev, cfg.task.n_test = 8, 4, 4
        cfg.adapter.method, cfg.adapter.layers = "tt", layers
        cfg.run.steps, cfg.run.batch_size, cfg.run.eval_every = 1, 4, 0
        run = Run(cfg, tmp_path / f"run-{layers}")
        run.run()
        assert run.status == "finished", run.error
        positions = run.handle.block_positions()
        d = run.handle.num_trainable()
        assert run.lr == default_lr("mezo_sgd", "tt", d, depth=depth_factor("tt", positions))
        lrs[layers] = (run.lr, d, metrics(run.run_dir))
    (lr_all, d_all, _), (lr_top, d_top, records) = lrs[None], lrs["top:1"]
    # the top block alone: fewer coordinates and lower curvature each, so more than c/d's d_all/d_top
    assert lr_top > lr_all * d_all / d_top * 1.2
    assert any("weighted by depth" in r["text"] for r in records if r["event"] == "log")
