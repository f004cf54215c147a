"""Shared fixtures: small shapes so each module compiles once and the suite stays fast on 2 cores.

``pytest -q`` is the inner loop (one xdist worker per core, XLA's backend optimisation off, compiled programs
cached on disk): tests marked ``slow`` (long statistical checks, subprocesses with other device counts, the
same check at more sizes) are skipped. ``pytest -q --all`` runs them too, and so does CI (``CI=true``, set by
.ci/run's environment), with XLA's default optimisation, so every test runs as users' code does before
anything lands.
"""

import os

import jax
import pytest

import jaxbo

# As a user's script would: one CPU device per core before JAX starts, so sweeps shard as they do for users.
jaxbo.use_cpu_cores()
# The inner loop reruns the same programs: keep compiled ones on disk (JAX keys them by program, flags and
# versions, so a change recompiles). JAXBO_TEST_CACHE= (empty) turns it off. CI runs without it, as users' code
# does: XLA:CPU executables loaded back from disk have crashed a worker with a fatal signal (a CI run of
# 76ae5fb lost one in tests/test_paired.py, a test that passes alone; jax-ml/jax#28908 reports such
# segfaults), and a crash there must not be the cache's.
_default_cache = (
    ""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes")
    else os.path.join(os.path.expanduser("~"), ".cache", "jaxbo", "xla-tests")
)
_cache = os.environ.get("JAXBO_TEST_CACHE", _default_cache)
if _cache:
    try:
        os.makedirs(_cache, exist_ok=True)
    except OSError:  # an unwritable home: run without the cache rather than warn on every compile
        _cache = ""
if _cache:
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


#: XLA:CPU's backend optimisation off: the inner loop's shapes are tiny, so its time is compile time, which
#: this flag cuts by about 40 % (measured, scripts/bench_readme.py). CI and --all compile as users do.
FAST_COMPILE = "--xla_backend_optimization_level=0"


def pytest_configure(config):
    # Before any test module computes (JAX reads XLA_FLAGS when its backends start, at the first computation).
    if not run_everything(config) and os.environ.get("JAXBO_TEST_FAST_COMPILE", "1") == "1":
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true", default=False, help="also run the tests marked slow")


def run_everything(config) -> bool:
    return config.getoption("--all") or os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config, items):
    if run_everything(config):
        return
    skip = pytest.mark.skip(reason="slow: run with --all (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small_config() -> jaxbo.Config:
    """A tiny but non-trivial configuration: every code path, milliseconds per step."""
    return jaxbo.Config(n_train=10, T=5, d=40, n_test=64, steps=40, log_every=10, signal_norm=6.0)


@pytest.fixture(scope="session")
def key() -> jax.Array:
    return jax.random.key(0)
