"""zoengine.optim core: estimator correctness, restore, RNG isolation, resume, validation, schedules."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from zoengine.config import OptimizerConfig, RunConfig
from zoengine.errors import ConfigError
from zoengine.optim import (
    OPTIMIZERS,
    MezoSGD,
    ZOAdaMU,
    adamu_anneal,
    adazeta_beta,
    adazeta_query_count,
    base,
    build_optimizer,
    lr_factor,
    make_lr_lambda,
    validate_config,
)

ZO_METHODS = [name for name, spec in OPTIMIZERS.items() if not spec.uses_backward]


def _build(
    name: str, params: list[torch.Tensor], *, lr: float = 1e-3, eps: float = 1e-3, steps: int = 100, **opts
):
    cfg = OptimizerConfig(name=name, lr=lr, eps=eps, options=opts)
    groups = [{"params": params, "names": [f"p{i}" for i in range(len(params))]}]
    return build_optimizer(cfg, groups, seed=123, total_steps=steps, steps_per_epoch=10)


def _quadratic(d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g, dtype=torch.float64)
    a = m @ m.T / d + torch.eye(d, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    x0 = torch.randn(d, generator=g, dtype=torch.float64)
    return a, b, x0


def _zo_estimate_mean(name: str, n: int, **opts) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over ``n`` steps of pg·u (u read back from the +ε evaluation), params reset each step."""
    a, b, x0 = _quadratic()
    x = x0.clone()
    opt = _build(name, [x], lr=1e-12, eps=1e-4, steps=10 * n, **opts)
    seen: list[torch.Tensor] = []

    def loss() -> torch.Tensor:
        seen.append(x.clone())
        return 0.5 * x @ a @ x + b @ x

    total = torch.zeros_like(x0)
    count = 0
    for _ in range(n):
        seen.clear()
        opt.step(loss)
        for q, pg in enumerate(opt.last_stats["projected_grads"]):
            u = (seen[2 * q] - x0) / 1e-4
            total += pg * u
            count += 1
        with torch.no_grad():
            x.copy_(x0)
    return total / count, a @ x0 + b


@pytest.mark.parametrize("name", ["mezo_sgd", "zo_sgd_mmt", "zo_sgd_sign", "zo_adam", "adazeta", "zo_adamu"])
def test_estimator_mean_matches_true_gradient_on_quadratic(name: str) -> None:
    # Gaussian RGE is unbiased for a quadratic (central differences are exact); with 3000
    # directions in d=8 the relative error is ~sqrt(d/N) ≈ 0.05: we allow 0.15, cosine > 0.99.
    # ZO-AdaMU is tested in its warm-up (u = z); after it u is momentum-centred by design.
    opts = {"T1": 10**6, "T2": 10**6, "T3": 10**6} if name == "zo_adamu" else {}
    est, true = _zo_estimate_mean(name, 3000, **opts)
    rel = float((est - true).norm() / true.norm())
    cos = float(est @ true / (est.norm() * true.norm()))
    assert rel < 0.15 and cos > 0.99, (rel, cos)


def test_projected_grad_is_the_directional_derivative_for_adamu_momentum() -> None:
    # After warm-up u is biased towards m; the scalar it measures must still be u·∇f exactly.
    a, b, x0 = _quadratic()
    x = x0.clone()
    opt = _build("zo_adamu", [x], lr=1e-2, eps=1e-5, T1=2, T2=6, T3=10)
    seen: list[torch.Tensor] = []

    def loss() -> torch.Tensor:
        seen.append(x.clone())
        return 0.5 * x @ a @ x + b @ x

    for _ in range(8):
        seen.clear()
        start = x.clone()
        opt.step(loss)
        u = (seen[0] - start) / 1e-5
        expected = float(u @ (a @ start + b))
        assert opt.last_stats["projected_grads"][0] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert opt.last_stats["beta1"] < 1.0 and opt.last_stats["anneal_alpha"] < 1.0


def test_estimator_matches_autograd_gradient_of_tiny_mlp() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).double()
    xb = torch.randn(16, 4, dtype=torch.float64)
    yb = torch.randn(16, 1, dtype=torch.float64)
    params = list(net.parameters())
    start = [p.detach().clone() for p in params]
    loss_fn = lambda: torch.nn.functional.mse_loss(net(xb), yb)  # noqa: E731
    true = torch.cat([g.flatten() for g in torch.autograd.grad(loss_fn(), params)])
    opt = _build("mezo_sgd", params, lr=1.0, eps=1e-5)
    n, total = 2000, torch.zeros_like(true)
    with torch.no_grad():
        for _ in range(n):
            opt.step(loss_fn)  # lr=1: the update is exactly −(estimate)
            delta = torch.cat([(s - p).flatten() for p, s in zip(params, start, strict=True)])
            total += delta
            for p, s in zip(params, start, strict=True):
                p.copy_(s)
    est = total / n
    cos = float(est @ true / (est.norm() * true.norm()))
    rel = float((est - true).norm() / true.norm())
    # d = 31 parameters, N = 2000: expected relative error ~ sqrt(d/N) ≈ 0.13.
    assert cos > 0.97 and rel < 0.3, (cos, rel)


def test_variance_falls_as_one_over_q() -> None:
    a, b, x0 = _quadratic()
    true = a @ x0 + b

    def mse(q: int, trials: int = 300) -> float:
        x = x0.clone()
        opt = _build("mezo_sgd", [x], lr=1.0, eps=1e-4, q=q)
        err = 0.0
        for _ in range(trials):
            opt.step(lambda: 0.5 * x @ a @ x + b @ x)
            err += float(((x0 - x) - true).pow(2).sum())
            x.copy_(x0)
        return err / trials

    ratio = mse(1) / mse(8)
    assert 5.0 < ratio < 12.0, ratio  # ideal 8


# --- restore, RNG isolation -------------------------------------------------------------------


def _big_float32(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(256, 64, generator=g) * 0.02, torch.randn(64, generator=g)]


def test_exact_restore_is_bit_exact_in_float32() -> None:
    params = _big_float32()
    before = [p.clone() for p in params]
    opt = _build("mezo_sgd", params, eps=1e-3, q=3, restore="exact")
    opt.step(lambda: float("nan"))  # a non-finite loss skips the update: only the restore remains
    assert opt.last_stats["skipped"] is True
    for p, s in zip(params, before, strict=True):
        assert torch.equal(p, s)


def test_inplace_restore_is_not_bit_exact_but_within_ulps() -> None:
    # Documents why "exact" exists: +ε, −2ε, +ε rounds; ~half the elements end 1-2 ulp off.
    params = _big_float32()
    before = [p.clone() for p in params]
    opt = _build("mezo_sgd", params, eps=1e-3, restore="inplace")
    opt.step(lambda: float("nan"))
    diff = torch.cat([(p - s).flatten() for p, s in zip(params, before, strict=True)])
    assert (diff != 0).any()
    ulp = torch.cat([(torch.nextafter(s, s + 1) - s).abs().flatten() for s in before])
    scale = torch.cat([s.abs().flatten() for s in before]).clamp_min(1e-3)
    assert float((diff.abs() / torch.maximum(ulp, scale * 2**-23)).max()) <= 8


def test_auto_restore_picks_exact_for_small_trainable_sets() -> None:
    opt = _build("mezo_sgd", _big_float32())
    assert opt.restore == "exact"


@pytest.mark.parametrize("q", [1, 3])
@pytest.mark.parametrize("name", ZO_METHODS)
def test_fused_and_unfused_inplace_updates_are_identical(name: str, q: int) -> None:
    # Fusing the last restore into the update saves a noise pass and must not change a bit.
    opts = {"T1": 2, "T2": 3, "T3": 5} if name == "zo_adamu" else {"q": q} if name != "adazeta" else {}

    def run(fused: bool) -> torch.Tensor:
        params = _big_float32()
        opt = _build(name, params, lr=1e-2, eps=1e-3, restore="inplace", **opts)
        opt.fused_restore = fused  # type: ignore[misc]
        for _ in range(4):
            opt.step(lambda: float(sum((p**2).sum() for p in params)))
        return torch.cat([p.flatten() for p in params])

    assert torch.equal(run(True), run(False))


@pytest.mark.parametrize("name", ZO_METHODS)
def test_step_leaves_global_rng_untouched(name: str) -> None:
    params = _big_float32()
    torch.manual_seed(7)
    state = torch.get_rng_state()
    opt = _build(name, params)
    for _ in range(2):
        opt.step(lambda: float(sum((p**2).sum() for p in params)))
    assert torch.equal(torch.get_rng_state(), state)


def test_same_seed_same_directions_different_seed_different() -> None:
    def pgs(seed: int) -> list[float]:
        x = torch.ones(10)
        opt = build_optimizer(
            OptimizerConfig(name="mezo_sgd"), [{"params": [x]}], seed=seed, total_steps=5, steps_per_epoch=5
        )
        opt.step(lambda: float((x**3).sum()))
        return opt.last_stats["projected_grads"]

    assert pgs(1) == pgs(1)
    assert pgs(1) != pgs(2)


def test_weight_decay_only_where_group_sets_it() -> None:
    w, bias = torch.ones(4), torch.ones(4)
    cfg = OptimizerConfig(name="mezo_sgd", lr=0.1, weight_decay=0.5)
    groups = [{"params": [w], "names": ["w"]}, {"params": [bias], "names": ["b"], "weight_decay": 0.0}]
    opt = build_optimizer(cfg, groups, seed=0, total_steps=1, steps_per_epoch=1)
    opt.step(lambda: 1.0)  # constant loss: pg = 0, only decay moves params
    assert torch.allclose(w, torch.full((4,), 0.95)) and torch.equal(bias, torch.ones(4))


# --- resume ----------------------------------------------------------------------------------


def _lm_like_problem() -> tuple[list[torch.Tensor], object]:
    g = torch.Generator().manual_seed(3)
    target = torch.randn(6, 5, generator=g)
    feats = torch.randn(12, 6, generator=g)
    w = torch.zeros(6, 5, requires_grad=True)
    bvec = torch.zeros(5, requires_grad=True)

    def loss_at(step: int) -> torch.Tensor:
        rows = feats[(step % 3) * 4 : (step % 3) * 4 + 4]  # a deterministic "batch" per step
        return ((rows @ w + bvec - rows @ target) ** 2).mean()

    return [w, bvec], loss_at


@pytest.mark.parametrize("chunk", [None, 8])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_resume_reproduces_the_uninterrupted_run_exactly(
    name: str, chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if chunk is not None:  # the 6x5 weight is perturbed/updated as 4 flat chunks
        monkeypatch.setattr(base, "CHUNK_NUMEL", chunk)
    opts = {"T1": 2, "T2": 6, "T3": 12} if name == "zo_adamu" else {}
    params, loss_at = _lm_like_problem()
    opt = _build(name, params, lr=1e-2, steps=12, **opts)

    def closure_for(o, ps, step):  # noqa: ANN001, ANN202
        if o.uses_backward:

            def fo() -> torch.Tensor:
                o.zero_grad()
                loss = loss_at(step)
                loss.backward()
                return loss

            return fo
        return lambda: loss_at(step)

    for step in range(5):
        opt.step(closure_for(opt, params, step))
    saved_params = [p.detach().clone() for p in params]
    saved_state = copy.deepcopy(opt.state_dict())
    uninterrupted = [opt.step(closure_for(opt, params, s)) for s in range(5, 10)]
    stats_a = opt.last_stats

    with torch.no_grad():
        for p, s in zip(params, saved_params, strict=True):
            p.copy_(s)
    fresh = _build(name, params, lr=1e-2, steps=12, **opts)
    fresh.load_state_dict(saved_state)
    resumed = [fresh.step(closure_for(fresh, params, s)) for s in range(5, 10)]
    assert resumed == uninterrupted
    assert fresh.last_stats["projected_grads"] == stats_a["projected_grads"]
    for p in params:  # buffers always cover whole parameters, chunked or not
        assert all(
            v.shape == p.shape for v in fresh.state[p].values() if isinstance(v, torch.Tensor) and v.dim()
        )


def test_large_tensors_are_chunked_and_the_estimator_stays_unbiased(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "CHUNK_NUMEL", 3)
    x = torch.zeros(8)
    opt = _build("mezo_sgd", [x])
    pieces = opt._param_list()
    assert [pc.x.numel() for pc in pieces] == [3, 3, 2] and all(pc.param is x for pc in pieces)
    est, true = _zo_estimate_mean("mezo_sgd", 3000)
    assert float((est - true).norm() / true.norm()) < 0.15


def test_lambda_lr_drives_the_optimizer_lr() -> None:
    x = torch.ones(3)
    cfg = OptimizerConfig(name="mezo_sgd", lr=1.0, lr_schedule="linear", warmup_steps=2)
    opt = build_optimizer(cfg, [{"params": [x]}], seed=0, total_steps=10, steps_per_epoch=5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, make_lr_lambda(cfg, 10))
    lrs = []
    for _ in range(4):
        opt.step(lambda: float(x.sum()))
        lrs.append(opt.last_stats["lr"])
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.875])


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "changes", "field"),
    [
        ("sgd", {}, "optimizer.name"),
        ("mezo_sgd", {"lr": 0.0}, "optimizer.lr"),
        ("mezo_sgd", {"eps": -1e-3}, "optimizer.eps"),
        ("mezo_sgd", {"weight_decay": -1.0}, "optimizer.weight_decay"),
        ("mezo_sgd", {"options": {"q_max": 3}}, "optimizer.q_max"),
        ("mezo_sgd", {"options": {"q": 0}}, "optimizer.q"),
        ("mezo_sgd", {"options": {"q": "many"}}, "optimizer.q"),
        ("mezo_sgd", {"options": {"restore": "maybe"}}, "optimizer.restore"),
        ("adazeta", {"options": {"q_max": 0}}, "optimizer.q_max"),
        ("adazeta", {"options": {"alpha": 0}}, "optimizer.alpha"),
        ("adazeta", {"options": {"min_q": 20, "q_max": 15}}, "optimizer.min_q"),
        ("zo_adamu", {"options": {"T1": 2000, "T2": 1000}}, "optimizer.T1"),
        ("zo_adamu", {"options": {"T2": 3000, "T3": 1000}}, "optimizer.T2"),
        ("zo_adamu", {"options": {"sigma": 0}}, "optimizer.sigma"),
        ("zo_sgd_mmt", {"options": {"momentum": 1.0}}, "optimizer.momentum"),
        ("zo_adam", {"options": {"beta2": 1.5}}, "optimizer.beta2"),
        ("fo_adamw", {"options": {"max_grad_norm": -1}}, "optimizer.max_grad_norm"),
    ],
)
def test_validation_errors_are_one_line_and_name_the_field(name: str, changes: dict, field: str) -> None:
    cfg = OptimizerConfig(name=name)
    for key, value in changes.items():
        setattr(cfg, key, value)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    text = str(info.value)
    assert info.value.field == field and text.startswith(field + ":") and "\n" not in text


def test_unknown_option_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="allowed: restore, noise, (q_max|alpha)"):
        validate_config(OptimizerConfig(name="adazeta", options={"shrink": 0.85}))
    with pytest.raises(ConfigError, match="allowed: mezo_sgd, zo_sgd_mmt"):
        validate_config(OptimizerConfig(name="adam"))


def test_toml_options_flow_through_run_config() -> None:
    cfg = RunConfig.from_toml('[optimizer]\nname = "adazeta"\nq_max = 12\nalpha = 0.85\n')
    validate_config(cfg.optimizer)
    x = torch.ones(2)
    opt = build_optimizer(cfg.optimizer, [{"params": [x]}], seed=0, total_steps=100, steps_per_epoch=10)
    assert opt.q_max == 12  # type: ignore[attr-defined]


def test_adamu_horizon_resolved_from_total_steps_is_checked() -> None:
    cfg = OptimizerConfig(name="zo_adamu", options={"T1": 1024})
    with pytest.raises(ConfigError, match="optimizer.T1"):
        build_optimizer(cfg, [{"params": [torch.ones(2)]}], seed=0, total_steps=500, steps_per_epoch=10)
    opt = build_optimizer(
        OptimizerConfig(name="zo_adamu"),
        [{"params": [torch.ones(2)]}],
        seed=0,
        total_steps=500,
        steps_per_epoch=10,
    )
    assert isinstance(opt, ZOAdaMU) and (opt.T1, opt.T2, opt.T3) == (25, 400, 500)  # 0.05, 0.8, 1 of the run


def test_registry_specs_are_complete() -> None:
    for name, spec in OPTIMIZERS.items():
        assert spec.name == name and spec.description and spec.memory
        assert all(spec.option_help().values()), name
        assert spec.presets, name  # every method names its paper's settings
        for preset in spec.presets.values():
            cfg = RunConfig()
            cfg.optimizer.name = name
            for key, value in preset.items():
                cfg.set(key if "." in key else f"optimizer.{key}", value)
            validate_config(cfg.optimizer)  # every preset is valid
        assert spec.cls.uses_backward == spec.uses_backward


# --- schedules -------------------------------------------------------------------------------


def test_adazeta_schedule_reproduces_the_reference_table() -> None:
    # zo-methods.md §A.4: SHRINK=0.85, NUM=20, NUM_MAX=15, E_total=160, 63 steps per epoch.
    beta = adazeta_beta(20, 0.85, 160)
    assert beta == pytest.approx(0.6223, abs=1e-4)
    table = [
        (range(0, 4), 1), (range(4, 8), 2), (range(8, 13), 3), (range(13, 18), 4), (range(18, 24), 5),
        (range(24, 30), 6), (range(30, 37), 7), (range(37, 45), 8), (range(45, 53), 9), (range(53, 62), 10),
        (range(62, 71), 11), (range(71, 81), 12), (range(81, 91), 13), (range(91, 101), 14), (range(101, 160), 15),
    ]  # fmt: skip
    for epochs, q in table:
        for e in epochs:
            for step in (63 * e, 63 * e + 62):  # constant within the epoch
                assert adazeta_query_count(step, 63, 0.85, beta, 15) == q, (e, q)
    total = sum(adazeta_query_count(k, 63, 0.85, beta, 15) for k in range(10_000))
    assert total * 2 == pytest.approx(219_600, rel=0.01)  # ≈ 219 600 forward passes


def test_adazeta_optimizer_uses_the_schedule() -> None:
    x = torch.ones(3)
    cfg = OptimizerConfig(name="adazeta", options={"alpha": 0.85, "q_target": 20, "q_max": 15})
    opt = build_optimizer(cfg, [{"params": [x]}], seed=0, total_steps=160 * 2, steps_per_epoch=2)
    qs = []
    for _ in range(12):
        opt.step(lambda: float((x**2).sum()))
        qs.append(opt.last_stats["queries"])
        assert opt.last_stats["forward_passes"] == 2 * qs[-1] == 2 * opt.last_stats["q_k"]
    assert qs == [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2]  # epochs 0-3 → 1, epoch 4 → 2


@pytest.mark.parametrize(("phi", "expected"), [(0.1, 0.473), (1.0, 0.146), (1.5, 0.000)])
def test_adamu_anneal_matches_figure_1_values(phi: float, expected: float) -> None:
    assert adamu_anneal(4, 1, 4, 6, phi) == pytest.approx(expected, abs=5e-4)
    assert adamu_anneal(5.5, 1, 4, 6, phi) == adamu_anneal(4, 1, 4, 6, phi)  # held after T2
    assert adamu_anneal(0.5, 1, 4, 6, phi) == 1.0
    assert adamu_anneal(1, 1, 4, 6, phi) == pytest.approx(1.0)  # continuous at T1


@pytest.mark.parametrize(
    ("T", "expected"),
    [((1024, 16000, 20000), (0.131, 0.010, 0.012)), ((1024, 80000, 100000), (0.090, 0.0004, 0.040))],
)
def test_adamu_anneal_matches_reference_table(T: tuple[int, int, int], expected: tuple[float, ...]) -> None:
    for phi, value in zip((0.1, 1.0, 1.5), expected, strict=True):
        assert adamu_anneal(T[1], *T, phi) == pytest.approx(value, abs=6e-4)
    assert adamu_anneal(T[1], *T, 1.0, third_phase="const0.9") == 0.9


def test_adamu_optimizer_reports_annealed_coefficients() -> None:
    x = torch.ones(3)
    opt = _build("zo_adamu", [x], T1=1, T2=4, T3=6, phi_alpha=0.1, phi_beta1=1.0, phi_beta2=1.5)
    for _ in range(5):
        opt.step(lambda: float((x**2).sum()))
    stats = opt.last_stats
    assert (stats["anneal_alpha"], stats["beta1"], stats["beta2"]) == pytest.approx(
        (0.473, 0.146, 0.0), abs=5e-4
    )


def test_lr_lambdas() -> None:
    assert [lr_factor(s, 10) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert [lr_factor(s, 10, "linear") for s in (0, 5, 9)] == pytest.approx([1.0, 0.5, 0.1])
    assert [lr_factor(s, 10, "cosine") for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    assert [lr_factor(s, 12, "linear", 2) for s in (0, 1, 2, 7)] == pytest.approx([0.5, 1.0, 1.0, 0.5])
    assert [lr_factor(s, 10, "constant", 4) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    fn = make_lr_lambda(OptimizerConfig(lr_schedule="cosine", warmup_steps=2), 12)
    assert fn(0) == 0.5 and fn(2) == 1.0 and fn(7) == pytest.approx(0.5) and fn(12) == pytest.approx(0.0)
    assert math.isclose(fn(100), 0.0, abs_tol=1e-12)


def test_mezo_sgd_direct_construction_and_closure_required() -> None:
    opt = MezoSGD([torch.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        opt.step()


def test_scratch_buffers_do_not_change_directions() -> None:
    params = _big_float32()
    opt = _build("mezo_sgd", params)
    fresh = [opt.direction(p, i, 99).clone() for i, p in enumerate(params)]
    with opt._scratch_pass():
        reused = [opt.direction(p, i, 99).clone() for i, p in enumerate(params)]
    assert all(torch.equal(a, b) for a, b in zip(fresh, reused, strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_directions_come_from_a_cuda_generator() -> None:
    p = torch.zeros(1000, device="cuda")
    opt = _build("mezo_sgd", [p])
    a, b = opt.direction(p, 0, 5), opt.direction(p, 0, 5)
    assert a.device.type == "cuda" and torch.equal(a, b)
    assert all(d.type == "cuda" for d in opt._noise_gens)
    state = torch.cuda.get_rng_state()
    opt.step(lambda: float((p**2).sum()))
    assert torch.equal(torch.cuda.get_rng_state(), state)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("restore", ["exact", "inplace"])
@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_closure_exception_discards_the_partial_step(restore: str, fail_at: int) -> None:
    # The engine's stop request raises inside the closure; the step must leave no trace.
    params = _big_float32()
    before = [p.clone() for p in params]
    opt = _build("mezo_sgd", params, restore=restore, q=2)
    calls = 0

    def failing() -> float:
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise _Stop
        return float(sum((p**2).sum() for p in params))

    with pytest.raises(_Stop):
        opt.step(failing)
    assert opt.step_count == 0
    for p, s in zip(params, before, strict=True):
        if restore == "exact":
            assert torch.equal(p, s)
        else:
            torch.testing.assert_close(p, s, rtol=1e-6, atol=1e-6)
    opt.step(lambda: float(sum((p**2).sum() for p in params)))
    reference = _build("mezo_sgd", [s.clone() for s in before], restore=restore, q=2)
    reference.step(lambda: 0.0)
    assert opt.last_stats["seeds"] == reference.last_stats["seeds"]
