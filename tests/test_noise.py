"""Perturbation noise: Rademacher (±1) next to Gaussian. Both give an unbiased two-point gradient
estimate (E[z]=0, E[zzᵀ]=I); Rademacher's has the lower variance (E[z⁴]=1 < 3). Draws are seeded
per (query, piece) as before, so a step replays exactly."""

from __future__ import annotations

import pytest
import torch

from zoengine.config import OptimizerConfig, RunConfig
from zoengine.errors import ConfigError
from zoengine.optim import MezoSGD, build_optimizer

A = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5, 0.8])
B = torch.tensor([0.3, -1.0, 0.7, 0.2, -0.4, 1.1])


def quadratic(theta: torch.Tensor) -> torch.Tensor:
    return (0.5 * A * theta.double() ** 2 + B * theta.double()).sum()


def mean_estimate(noise: str, q: int, seed: int = 0) -> torch.Tensor:
    """One step of MeZO with ``q`` queries at lr 1: the update is −(1/q)·Σ pg·z, the estimate."""
    theta = torch.nn.Parameter(torch.tensor([0.5, -0.2, 1.0, 0.3, -0.7, 0.1]))
    start = theta.detach().clone()
    opt = MezoSGD([theta], lr=1.0, eps=1e-3, q=q, seed=seed, noise=noise)
    opt.step(lambda: quadratic(theta))
    return (start - theta.detach()).double()


def test_rademacher_draws_are_plus_minus_one_and_seeded() -> None:
    theta = torch.nn.Parameter(torch.zeros(4099))  # not a multiple of 8: 8 signs per random byte
    opt = MezoSGD([theta], lr=1.0, eps=1e-3, noise="rademacher")
    z1 = opt.direction(theta, 0, 12345).clone()
    z2 = opt.direction(theta, 0, 12345).clone()
    assert set(z1.unique().tolist()) == {-1.0, 1.0} and set(z1[-3:].abs().tolist()) == {1.0}
    assert torch.equal(z1, z2)  # same (query seed, piece) → same z
    assert not torch.equal(z1, opt.direction(theta, 1, 12345))  # another piece, other bits
    assert abs(float(z1.mean())) < 0.06
    gauss = MezoSGD([theta], lr=1.0, eps=1e-3).direction(theta, 0, 12345)
    assert len(gauss.unique()) > 4000


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_two_point_estimate_is_unbiased(noise: str) -> None:
    theta0 = torch.tensor([0.5, -0.2, 1.0, 0.3, -0.7, 0.1], dtype=torch.float64)
    grad = A.double() * theta0 + B.double()
    est = mean_estimate(noise, q=4000)
    # one estimate's coordinate i has variance ‖g‖² + g_i² (Gaussian) or ‖g‖² − g_i² (Rademacher):
    # the mean of q = 4000 lies within 5 of its standard deviations
    assert torch.allclose(est, grad, atol=5 * 2**0.5 * float(grad.norm()) / 4000**0.5)


def test_rademacher_estimate_has_the_lower_variance() -> None:
    theta0 = torch.tensor([0.5, -0.2, 1.0, 0.3, -0.7, 0.1], dtype=torch.float64)
    grad = A.double() * theta0 + B.double()
    err = {
        noise: torch.stack([(mean_estimate(noise, q=1, seed=s) - grad).pow(2).sum() for s in range(2000)]).mean()
        for noise in ("gaussian", "rademacher")
    }
    # E‖pg·z − g‖² = (d+1)·‖g‖² for Gaussian z and (d−1)·‖g‖² for Rademacher: 5/7 at d = 6
    assert err["rademacher"] < 0.85 * err["gaussian"]


def test_noise_option_is_validated_and_reaches_the_optimizer() -> None:
    theta = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer(
        OptimizerConfig(name="zo_adam", lr=1e-3, options={"noise": "rademacher"}),
        [{"params": [theta]}], seed=0, total_steps=4, steps_per_epoch=2,
    )  # fmt: skip
    assert opt.noise == "rademacher"
    cfg = RunConfig()
    cfg.set("optimizer.noise", "uniform")
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert info.value.field == "optimizer.noise" and "gaussian" in str(info.value)
