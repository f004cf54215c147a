"""The sweep's plan: pure Python and numpy, so it is tested on simulated backends without any device."""

import dataclasses
import json
import re

import pytest

import jaxbo
from jaxbo import plan
from jaxbo.plan import Backend

PAPER_GRID = {"d": [250 + 125 * i for i in range(39)], "signal_norm": [5 + 2.5 * i for i in range(39)]}
CPU_2 = Backend(platform="cpu", device_count=2, memory_bytes=24 << 30)
H100 = Backend(platform="gpu", device_count=1, memory_bytes=80 << 30)
TPU_V2_8 = Backend(platform="tpu", device_count=8, memory_bytes=8 << 30)


def paper_plan(backend, seeds=10, **kwargs):
    config = jaxbo.Config()
    axes = plan.validate_grid(PAPER_GRID, config)
    return plan.make_plan(axes, config, seeds=seeds, engine="reduced", histories=False, backend=backend, **kwargs)


def test_run_table_is_the_grid_in_c_order_with_seeds_innermost():
    axes = plan.validate_grid({"d": [40, 50], "signal_norm": [1.0, 2.0, 3.0]}, jaxbo.Config())
    values, seeds, ids = plan.run_table(axes, 2)
    assert values["d"].tolist() == [40] * 6 + [50] * 6
    assert values["signal_norm"].tolist() == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0] * 2
    assert seeds.tolist() == [0, 1] * 6
    assert ids[0] == ids[1] == plan.coordinate_hash({"d": 40, "signal_norm": 1.0}) and len(set(ids)) == 6


def test_cpu_plan_uses_cache_sized_batches_several_per_call():
    planned = paper_plan(CPU_2)
    (group,) = planned.groups
    # Known answer: the paper's Gram matrix is (n·T)² = 160² float32 = 100 KiB, so a 512 KiB cache holds the
    # Grams of 5 runs per device: batches of 5 × 2 devices, 16 batches per call.
    assert plan.CACHE_BYTES == 512 << 10 and group.sub_chunks == plan.SUB_CHUNKS == 16
    assert group.chunk_size == 5 * 2 * 16
    assert group.chunk_size % (2 * group.sub_chunks) == 0  # equal batches on every device
    assert planned.total_runs == 15210 and sum(len(group.chunk_rows(i)) for i in range(group.chunks)) == 15210


@pytest.mark.parametrize("backend", [H100, TPU_V2_8])
def test_accelerator_plan_is_one_call_when_it_fits(backend):
    (group,) = paper_plan(backend).groups
    assert group.chunks == 1 and group.sub_chunks == 1  # the whole phase diagram in one compiled call
    assert group.chunk_size >= 15210 and group.chunk_size % backend.device_count == 0
    assert (
        group.chunk_size * group.bytes_per_run
        <= plan.ACCELERATOR_MEMORY_FRACTION * (backend.memory_bytes * backend.device_count)
        + group.bytes_per_run * backend.device_count
    )


def test_accelerator_plan_splits_only_when_memory_binds():
    small_gpu = Backend(platform="gpu", device_count=1, memory_bytes=1 << 30)
    (group,) = paper_plan(small_gpu).groups
    half = (1 << 30) // 2  # ACCELERATOR_MEMORY_FRACTION of the device
    assert group.chunk_size * group.bytes_per_run <= half < (group.chunk_size + 1) * group.bytes_per_run
    assert group.chunks > 1


def test_explicit_chunk_size_and_budget_bind():
    (group,) = paper_plan(CPU_2, chunk_size=7).groups
    assert group.chunk_size == 8 and group.sub_chunks == 1  # rounded up to the device count
    per_run = paper_plan(CPU_2).groups[0].bytes_per_run
    (group,) = paper_plan(CPU_2, memory_budget=10 * per_run).groups
    assert group.chunk_size == 10 and group.chunk_size % 2 == 0  # 10 runs' bytes: 10 runs, 5 per device
    (group,) = paper_plan(CPU_2, memory_budget=per_run).groups
    assert group.chunk_size == 2  # never fewer than one run per device


def test_primal_plan_buckets_d_and_refuses_what_cannot_fit():
    config = jaxbo.Config(n_train=10, T=5)
    axes = plan.validate_grid({"d": [30, 34, 60]}, config)
    planned = plan.make_plan(axes, config, seeds=2, engine="primal", histories=False, backend=CPU_2, max_buckets=2)
    assert [group.width for group in planned.groups] == [34, 60]
    assert json.loads(json.dumps(planned.describe()))["compiles"] == 2
    with pytest.raises(ValueError, match=r"Config\.d = 3000000000 is too large for the primal engine.*int32"):
        plan.check_fits(config, "primal", 3 * 10**9, False, CPU_2)
    tiny = Backend(platform="gpu", device_count=1, memory_bytes=1 << 20)
    with pytest.raises(ValueError, match=r"Config\.d = 100000 needs about .* GiB .* of one gpu device"):
        plan.check_fits(config, "primal", 100_000, False, tiny)
    plan.check_fits(config, "reduced", 3 * 10**9, False, tiny)  # the reduced engine takes any d


def test_cpu_devices_share_the_host_memory_so_their_runs_count_together():
    # Trained W at d = 30000: W alone is 30000² float32 = 3.35 GiB, held in 4 copies (W₀, W, gradient, update).
    config = jaxbo.Config(d=30_000, attention="trained")
    per_run = plan.bytes_per_run(config, "kernel", 30_000, False)
    assert 4 * 4 * 30_000**2 <= per_run < 1.1 * 4 * 4 * 30_000**2
    host = Backend(platform="cpu", device_count=2, memory_bytes=int(1.5 * per_run))
    one_at_a_time = r"Config\.d = 30000 .* 2 such runs at once .*devices=jax\.devices\(\)\[:1\]"
    with pytest.raises(ValueError, match=one_at_a_time):
        plan.check_fits(config, "kernel", 30_000, False, host)
    plan.check_fits(config, "kernel", 30_000, False, dataclasses.replace(host, device_count=1))
    # GPUs each have their own memory: two of them hold one run each.
    plan.check_fits(config, "kernel", 30_000, False, dataclasses.replace(host, platform="gpu"))
    too_small = Backend(platform="cpu", device_count=2, memory_bytes=per_run // 2)
    with pytest.raises(ValueError, match="2 such runs at once") as refused:
        plan.check_fits(config, "kernel", 30_000, False, too_small)
    assert "devices=jax.devices()[:1]" not in str(refused.value)  # one run does not fit either


def test_backend_of_real_devices():
    import jax

    backend = Backend.of(jax.devices())
    assert backend.platform == "cpu" and backend.device_count == jax.device_count() and not backend.accelerator
    assert backend.memory_bytes is None or backend.memory_bytes > 1 << 28


def test_a_memory_refusal_says_what_does_fit():
    """A history-logging primal run at d = 10⁶ is told that final metrics alone fit; a trained-W run is told the
    largest d that fits (not an engine that would change its model), and that d does fit."""
    config = jaxbo.Config(d=10**6)
    final_only = plan.bytes_per_run(config, "primal", 10**6, False)
    gpu = Backend(platform="gpu", device_count=1, memory_bytes=int(1.2 * final_only))
    with pytest.raises(ValueError, match=r"With final metrics only it fits: jaxbo\.sweep keeps no histories"):
        plan.check_fits(config, "primal", 10**6, True, gpu)
    plan.check_fits(config, "primal", 10**6, False, gpu)
    trained = jaxbo.Config(d=30_000, attention="trained")
    small = Backend(
        platform="gpu", device_count=1, memory_bytes=plan.bytes_per_run(trained, "kernel", 30_000, False) // 3
    )
    with pytest.raises(
        ValueError, match=r"The largest d of this model and engine that fits here is ([\d,]+)\."
    ) as refused:
        plan.check_fits(trained, "kernel", 30_000, False, small)
    assert "reduced" not in str(refused.value)
    largest = int(re.search(r"fits here is ([\d,]+)\.", str(refused.value)).group(1).replace(",", ""))
    plan.check_fits(trained.replace(d=largest), "kernel", largest, False, small)
    with pytest.raises(ValueError):
        plan.check_fits(trained.replace(d=largest + 1), "kernel", largest + 1, False, small)
