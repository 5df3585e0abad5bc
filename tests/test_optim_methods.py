"""Every optimizer lowers the loss: 2-D test functions (ZO-AdaMU paper Fig. 2) and a tiny LM."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from zoengine.config import OptimizerConfig
from zoengine.optim import OPTIMIZERS, build_optimizer


def rosenbrock(v: torch.Tensor) -> torch.Tensor:
    """As printed in the ZO-AdaMU paper (axis-swapped): minimum f(1, 1) = 0."""
    x, y = v[0], v[1]
    return 100 * (x - y**2) ** 2 + (1 - y) ** 2


def beale(v: torch.Tensor) -> torch.Tensor:
    x, y = v[0], v[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def quadratic(v: torch.Tensor) -> torch.Tensor:
    """Fig. 2c: (x + y)² + (x − y)²/10, condition number 10."""
    x, y = v[0], v[1]
    return (x + y) ** 2 + (x - y) ** 2 / 10


FUNCTIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], list[float]]] = {
    "rosenbrock": (rosenbrock, [0.0, -1.0]),  # f = 104
    "beale": (beale, [1.0, 1.0]),  # f ≈ 14.2
    "quadratic": (quadratic, [2.0, -1.5]),  # f = 1.475
}

# lr per (method, function), chosen once from a sweep over 1e-4..1e-1 (500 steps, eps 1e-3).
LR = {
    "mezo_sgd": {"rosenbrock": 1e-3, "beale": 1e-2, "quadratic": 3e-2},
    "zo_sgd_mmt": {"rosenbrock": 1e-4, "beale": 1e-3, "quadratic": 1e-2},
    "zo_sgd_sign": {"rosenbrock": 1e-2, "beale": 1e-2, "quadratic": 1e-2},
    "adazeta": {"rosenbrock": 1e-3, "beale": 1e-2, "quadratic": 3e-2},
    "zo_adamu": {"rosenbrock": 1e-3, "beale": 1e-2, "quadratic": 3e-2},
    "zo_adam": {"rosenbrock": 3e-2, "beale": 3e-2, "quadratic": 3e-2},
    "fo_adamw": {"rosenbrock": 1e-2, "beale": 1e-2, "quadratic": 3e-2},
}
STEPS = 500


def _closure(opt, loss: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:  # noqa: ANN001
    if not opt.uses_backward:
        return loss

    def fo() -> torch.Tensor:
        opt.zero_grad()
        value = loss()
        value.backward()
        return value

    return fo


@pytest.mark.parametrize("fname", list(FUNCTIONS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_method_lowers_test_function(name: str, fname: str) -> None:
    fn, start = FUNCTIONS[fname]
    x = torch.tensor(start, requires_grad=True)
    cfg = OptimizerConfig(name=name, lr=LR[name][fname], eps=1e-3)
    opt = build_optimizer(
        cfg, [{"params": [x], "names": ["xy"]}], seed=0, total_steps=STEPS, steps_per_epoch=50
    )
    f0 = float(fn(x.detach()))
    step = _closure(opt, lambda: fn(x))
    for _ in range(STEPS):
        opt.step(step)
    f1 = float(fn(x.detach()))
    assert f1 < 0.05 * f0, (f0, f1)  # at least a 20x reduction in 500 steps


# lr per method for the tiny LM (o_proj + down_proj trainable, 60 steps).
LM_LR = {
    "mezo_sgd": 0.1,
    "zo_sgd_mmt": 0.01,
    "zo_sgd_sign": 0.01,
    "adazeta": 0.1,
    "zo_adamu": 0.1,
    "zo_adam": 0.01,
    "fo_adamw": 0.01,
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_method_lowers_tiny_lm_loss(name: str, tiny_llama, tiny_tokenizer) -> None:  # noqa: ANN001
    model = tiny_llama
    ids = tiny_tokenizer("the movie was great and the music was wonderful .", return_tensors="pt")[
        "input_ids"
    ]
    names = [n for n, _ in model.named_parameters() if "o_proj" in n or "mlp.down_proj" in n]
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    params = dict(model.named_parameters())
    groups = [{"params": [params[n] for n in names], "names": names}]
    steps = 60
    opt = build_optimizer(
        OptimizerConfig(name=name, lr=LM_LR[name], eps=1e-3),
        groups,
        seed=0,
        total_steps=steps,
        steps_per_epoch=10,
    )

    def loss() -> torch.Tensor:
        return model(input_ids=ids, labels=ids).loss  # next-token CE on the fixed sentence

    with torch.no_grad():
        before = float(loss())
    step = _closure(opt, loss)
    for _ in range(steps):
        opt.step(step)
        assert not opt.last_stats["skipped"]
    with torch.no_grad():
        after = float(loss())
    assert after < before - 0.1, (before, after)
