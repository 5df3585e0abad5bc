"""Property-based tests (hypothesis): the config parser, ``--set`` values and the TT shape factoriser.

Whatever text a user types, parsing ends in a config or in ONE ``ConfigError`` line naming the
field; never another exception. Valid configs survive TOML round trips unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zoengine.adapters.tt import factorize, split_point, tt_shape_for
from zoengine.config import SECTIONS, RunConfig
from zoengine.errors import ConfigError, ZOError
from zoengine.tasks.labels import _mapping_toml

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

COMMON_KEYS = [
    f"{section}.{f.name}"
    for section in SECTIONS
    for f in dataclasses.fields(getattr(RunConfig(), section))
    if f.name != "options"
]

words = st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=8)
typed_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["inf", "-inf", "nan", "1e400", "true", "[1, 2]", "{a = 1}", "", "none", "auto", "1.5", "-3"]
    ),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def _one_line(exc: ZOError) -> None:
    text = exc.one_line()
    assert "\n" not in text and text == str(exc)


@FAST
@given(key=st.sampled_from(COMMON_KEYS), text=typed_text)
def test_set_any_text_gives_a_value_or_one_config_error(key: str, text: str) -> None:
    cfg = RunConfig()
    try:
        cfg.set(key, text)
    except ConfigError as exc:
        _one_line(exc)
        assert exc.field == key
        return
    try:
        cfg.validate()
    except ZOError as exc:  # validation names some field in one line
        _one_line(exc)
        return
    back = RunConfig.from_toml(cfg.to_toml())  # what was accepted is written and read back
    assert back.to_dict() == cfg.to_dict()


@FAST
@given(text=st.text(max_size=200))
def test_from_toml_of_any_text_is_a_config_or_one_config_error(text: str) -> None:
    try:
        RunConfig.from_toml(text, source="cfg.toml").validate()
    except ZOError as exc:
        _one_line(exc)


toml_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=10),
    st.lists(st.integers(0, 9), max_size=3),
)


@FAST
@given(
    data=st.dictionaries(
        st.sampled_from(SECTIONS),
        st.dictionaries(
            st.sampled_from(
                ["name", "lr", "eps", "steps", "seed", "label_words", "label_map", "n_train", "zzz"]
            ),
            toml_scalars,
            max_size=4,
        ),
        max_size=5,
    )
)
def test_from_dict_of_typed_values_is_a_config_or_one_config_error(data: dict) -> None:
    try:
        RunConfig.from_dict(data).validate()
    except ZOError as exc:
        _one_line(exc)


@FAST
@given(
    steps=st.integers(1, 10**9),
    batch=st.integers(1, 4096),
    lr=st.floats(min_value=1e-12, max_value=1e3, allow_nan=False, allow_infinity=False),
    eps=st.floats(min_value=1e-12, max_value=1.0),
    seed=st.integers(0, 2**32 - 1),
    label_words=st.lists(words.map(str.strip).filter(bool), min_size=2, max_size=4),
    label_map=st.dictionaries(words, words, max_size=4),
    n_train=st.one_of(st.none(), st.integers(0, 10**6)),
    zero_shot=st.booleans(),
)
def test_valid_configs_round_trip_through_toml_and_set(
    steps, batch, lr, eps, seed, label_words, label_map, n_train, zero_shot
) -> None:
    cfg = RunConfig()
    cfg.set("run.steps", steps)
    cfg.set("run.batch_size", str(batch))  # typed on a command line
    cfg.set("optimizer.lr", repr(lr))
    cfg.set("optimizer.eps", eps)
    cfg.set("run.seed", str(seed))
    cfg.set("task.label_words", label_words)
    cfg.set("task.label_map", _mapping_toml(label_map) if label_map else "none")
    if n_train is not None:
        cfg.set("task.n_train", str(n_train))
    cfg.set("run.zero_shot_eval", "true" if zero_shot else "false")
    cfg.validate()
    assert (cfg.run.steps, cfg.run.batch_size, cfg.optimizer.lr, cfg.optimizer.eps) == (steps, batch, lr, eps)
    assert cfg.task.label_map == ({k.strip(): v.strip() for k, v in label_map.items()} or None)
    assert cfg.run.zero_shot_eval is zero_shot and cfg.run.seed == seed
    back = RunConfig.from_toml(cfg.to_toml())
    assert back.to_dict() == cfg.to_dict()
    assert tomllib.loads(cfg.to_toml())  # and it is plain TOML


@FAST
@given(
    value=st.floats(allow_nan=True, allow_infinity=True),
    key=st.sampled_from(["optimizer.lr", "optimizer.eps"]),
)
def test_lr_and_eps_must_be_finite_and_positive(value: float, key: str) -> None:
    cfg = RunConfig()
    cfg.set(key, repr(value))
    if math.isfinite(value) and value > 0:
        cfg.validate()
    else:
        with pytest.raises(ConfigError) as info:
            cfg.validate()
        assert info.value.field == key


@FAST
@given(
    mapping=st.dictionaries(
        st.text(min_size=1, max_size=6).map(str.strip).filter(bool), words, min_size=1, max_size=4
    )
)
def test_label_map_suggestion_text_parses_back_as_set_value(mapping: dict[str, str]) -> None:
    """The refusal message shows ``--set task.label_map='{...}'``; pasting it gives the same map."""
    assume(all(not k.startswith(" ") and not k.endswith(" ") for k in mapping))
    cfg = RunConfig()
    cfg.set("task.label_map", _mapping_toml(mapping))
    assert cfg.task.label_map == {k.strip(): v.strip() for k, v in mapping.items()}


# --- the TT shape factoriser ----------------------------------------------------------------------


def _best_max_factor(n: int, modes: int) -> int:
    """Brute force: the smallest possible largest factor of n split into at most ``modes`` factors."""

    def best(m: int, k: int) -> int:
        if m == 1:
            return 1
        if k == 1:
            return m
        return min(max(f, best(m // f, k - 1)) for f in range(2, m + 1) if m % f == 0)

    return best(n, modes)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 5000), modes=st.integers(0, 5))
def test_factorize_multiplies_back_and_is_balanced(n: int, modes: int) -> None:
    shape = factorize(n, modes)
    assert math.prod(shape) == n
    assert 1 <= len(shape) <= max(1, modes)
    assert shape == [1] or all(f > 1 for f in shape)
    assert all(a >= b for a, b in pairwise(shape))  # largest first


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 400), modes=st.integers(1, 4))
def test_factorize_has_the_smallest_largest_factor(n: int, modes: int) -> None:
    assert max(factorize(n, modes)) == _best_max_factor(n, modes)


def test_factorize_documented_examples() -> None:
    assert factorize(4096, 3) == [16, 16, 16]
    assert factorize(576, 3) == [9, 8, 8]
    assert factorize(64, 3) == [4, 4, 4]
    assert factorize(1, 3) == [1] and factorize(7, 3) == [7]


@settings(max_examples=200, deadline=None)
@given(d=st.integers(2, 2048), bottleneck=st.integers(1, 256), modes=st.integers(1, 4))
def test_tt_shape_covers_width_then_bottleneck(d: int, bottleneck: int, modes: int) -> None:
    opts = {"tt_shape": None, "bottleneck": bottleneck, "tt_modes": modes, "_given": set()}
    b, shape = tt_shape_for(d, opts, "layer")
    assert b == min(bottleneck, d)
    assert math.prod(shape) == d * b
    s = split_point(shape, d, b)
    if d > 1:
        assert s is not None and math.prod(shape[:s]) == d and math.prod(shape[s:]) == b
    # an explicit shape is the derived one given back: same result
    opts2 = {**opts, "tt_shape": shape, "_given": {"tt_shape"}}
    try:
        b2, shape2 = tt_shape_for(d, opts2, "layer")
    except ZOError:
        # a prefix of the derived shape can multiply to d before the intended split (e.g. b = 1)
        return
    assert shape2 == shape and math.prod(shape2[: split_point(shape2, d, b2) or len(shape2)]) == d
