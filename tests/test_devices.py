"""Every core by default: what jaxbo asks of JAX, when, and what it says (subprocesses: JAX starts once)."""

import os
import subprocess
import sys
import textwrap

import pytest

import jaxbo


def python(script: str, **environment) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", **environment)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=300
    )


def test_use_cpu_cores_after_jax_started_says_how():
    # This process already chose its count (conftest): nothing changes and no error.
    assert jaxbo.use_cpu_cores() is False
    with pytest.raises(ValueError, match="count = 0"):
        jaxbo.use_cpu_cores(0)


@pytest.mark.slow
def test_plain_sweep_uses_every_core_and_says_so_once():
    done = python(
        """
        import jax, jaxbo
        grid = {"d": [40]}
        config = jaxbo.Config(n_train=4, T=3, n_test=8, steps=10)
        first = jaxbo.sweep(grid, seeds=2, config=config)
        second = jaxbo.sweep(grid, seeds=2, config=config)
        print("devices", first.metadata["device_count"], second.metadata["device_count"], jax.device_count())
        """,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    cores = jaxbo.devices.cpu_cores()
    assert f"devices {cores} {cores} {cores}" in done.stdout
    assert done.stderr.count("asked JAX for") == (1 if cores > 1 else 0)


@pytest.mark.slow
def test_jax_started_first_warns_once_with_the_remedy():
    done = python(
        """
        import warnings, jax, jax.numpy as jnp, jaxbo
        jnp.zeros(1).block_until_ready()  # JAX starts with one CPU device
        config = jaxbo.Config(n_train=4, T=3, n_test=8, steps=10)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            jaxbo.sweep({"d": [40]}, seeds=2, config=config, progress=False)
            jaxbo.sweep({"d": [40]}, seeds=2, config=config, progress=False)
        messages = [str(w.message) for w in caught if "CPU device" in str(w.message)]
        print(len(messages), messages[0] if messages else "")
        try:
            jaxbo.use_cpu_cores()
        except RuntimeError as error:
            print("refused:", error)
        """,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if jaxbo.devices.cpu_cores() > 1:
        assert done.stdout.startswith("1 jaxbo.sweep runs on 1 CPU device") and "jaxbo.use_cpu_cores()" in done.stdout
        assert "refused: jaxbo.use_cpu_cores() must run before JAX starts" in done.stdout
    assert "xla_force_host_platform_device_count" in done.stdout or jaxbo.devices.cpu_cores() == 1


@pytest.mark.slow
def test_a_count_the_user_chose_is_respected():
    done = python(
        """
        import jax, jaxbo
        result = jaxbo.sweep({"d": [40]}, seeds=3, config=jaxbo.Config(n_train=4, T=3, n_test=8, steps=10))
        print("devices", result.metadata["device_count"])
        """,
        XLA_FLAGS="--xla_force_host_platform_device_count=3",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "devices 3" in done.stdout and "asked JAX" not in done.stderr
