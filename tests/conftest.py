"""Shared fixtures: small shapes so each module compiles once and the suite stays fast on 2 cores."""

import jax
import pytest

import jaxbo


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true", default=False, help="widen the small default test matrix")


@pytest.fixture(scope="session")
def small_config() -> jaxbo.Config:
    """A tiny but non-trivial configuration: every code path, milliseconds per step."""
    return jaxbo.Config(n_train=10, T=5, d=40, n_test=64, steps=40, log_every=10, signal_norm=6.0)


@pytest.fixture(scope="session")
def key() -> jax.Array:
    return jax.random.key(0)
