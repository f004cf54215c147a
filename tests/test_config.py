import math

import jax
import pytest

import jaxbo
from jaxbo.config import SWEEPABLE


def test_defaults_are_the_authors_settings():
    config = jaxbo.Config()
    assert (config.n_train, config.T, config.d, config.signal_norm) == (20, 8, 2000, 20.0)
    assert (config.rho, config.sigma, config.noise_rate, config.lr) == (0.1, 1.0, 0.2, 5e-3)
    assert (config.n_test, config.steps, config.log_every, config.layout) == (1000, 1000, 10, (1, 1, 1))
    assert (config.flips, config.attention, config.gradient) == ("balanced", "identity", "analytic")
    assert config.validate() is config
    assert config.n_logs == 100


def test_sweepable_fields_are_the_pytree_leaves():
    config = jaxbo.Config()
    leaves = jax.tree.leaves(config)
    assert leaves == [getattr(config, name) for name in SWEEPABLE]
    doubled = jax.tree.map(lambda x: 2 * x, config)
    assert doubled.d == 4000 and doubled.T == config.T and doubled.layout == config.layout


def test_frozen_and_replace():
    config = jaxbo.Config()
    with pytest.raises(AttributeError):
        config.d = 3  # type: ignore[misc]
    assert config.replace(d=300).d == 300
    with pytest.raises(TypeError, match="no field"):
        config.replace(dimension=3)


BAD_VALUES = [
    ("n_train", 1, ValueError, ">= 2"),
    ("n_train", -5, ValueError, ">= 2"),
    ("n_train", 2.0, TypeError, "int"),
    ("T", 2, ValueError, ">= 3"),
    ("d", 1, ValueError, r"\[2, "),
    ("d", 0, ValueError, r"\[2, "),
    ("d", 2**53 + 1, ValueError, r"\[2, 9007199254740992\]"),
    ("n_test", 0, ValueError, ">= 1"),
    ("steps", 0, ValueError, ">= 1"),
    ("log_every", -1, ValueError, ">= 1"),
    ("steps", 15, ValueError, "multiple of Config.log_every"),
    ("noise_rate", 0.5, ValueError, r"\[0, 0.5\)"),
    ("noise_rate", -0.1, ValueError, r"\[0, 0.5\)"),
    ("noise_rate", math.nan, ValueError, r"\[0, 0.5\)"),
    ("rho", 0.0, ValueError, r"\(0, 1\)"),
    ("rho", 1.0, ValueError, r"\(0, 1\)"),
    ("sigma", 0.0, ValueError, r"\(0, inf\)"),
    ("sigma", math.inf, ValueError, "finite"),
    ("signal_norm", -1.0, ValueError, r"\(0, inf\)"),
    ("signal_norm", "20", TypeError, "real number"),
    ("lr", 0.0, ValueError, r"\(0, inf\)"),
    ("lr", math.nan, ValueError, "finite"),
    ("layout", (1, 1), TypeError, "three ints"),
    ("layout", (0, 1, 1), ValueError, "relevant"),
    ("layout", (2, 2, 2), ValueError, "T must be >= 6"),
    ("flips", "half", ValueError, "balanced"),
    ("attention", "learned", ValueError, "identity"),
    ("gradient", "numeric", ValueError, "analytic"),
]


@pytest.mark.parametrize(("field", "value", "error", "allowed"), BAD_VALUES)
def test_validate_names_field_value_and_range(field, value, error, allowed):
    config = jaxbo.Config(T=5) if field == "layout" else jaxbo.Config()
    with pytest.raises(error) as info:
        config.replace(**{field: value}).validate()
    message = str(info.value)
    assert f"Config.{field}" in message or (field == "layout" and "Config.T" in message)
    if field != "layout" or "T must" not in allowed:
        assert repr(value) in message or str(value) in message
    assert info.match(allowed)


def test_construction_validates_and_names_unknown_fields():
    with pytest.raises(ValueError, match=r"Config\.d = -5 is out of range"):
        jaxbo.Config(d=-5)
    with pytest.raises(ValueError, match=r"Config\.noise_rate = 1\.5 .*\[0, 0\.5\)"):
        jaxbo.Config(noise_rate=1.5)
    with pytest.raises(TypeError, match=r"no field\(s\) \['dd'\]; fields are \('n_train', 'T', 'd'"):
        jaxbo.Config(dd=3)
    assert jaxbo.Config(d=3 * 10**9).d == 3 * 10**9  # any d a float represents (the reduced engine's range)


def test_traced_copies_and_pytree_rebuilds_are_not_validated():
    config = jaxbo.Config()
    traced = jaxbo.config.with_traced(config, d=jax.numpy.float32(-1.0))  # as inside a trace: no checks
    assert traced.d == -1.0 and traced.T == config.T
    with pytest.raises(TypeError, match="sweepable"):
        jaxbo.config.with_traced(config, T=3)
    # JAX rebuilds pytrees with axis specs and sentinels as leaves; that must not raise.
    rebuilt = jax.tree.unflatten(jax.tree.structure(config), [None] * len(SWEEPABLE))
    assert rebuilt.d is None and rebuilt.layout == config.layout
    axes = jaxbo.config.with_traced(jax.tree.map(lambda _: None, config), signal_norm=0)
    batched = jaxbo.config.with_traced(config, signal_norm=jax.numpy.arange(1.0, 4.0))
    doubled = jax.vmap(lambda c: c.signal_norm * 2, in_axes=(axes,))(batched)
    assert doubled.tolist() == [2.0, 4.0, 6.0]


def test_entry_points_validate_before_tracing():
    with pytest.raises(ValueError, match=r"Config\.noise_rate"):
        jaxbo.simulate(0, jaxbo.Config(noise_rate=0.7))
    with pytest.raises(TypeError, match="Config"):
        jaxbo.simulate(0, {"d": 10})
