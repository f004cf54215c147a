"""``Engine.bytes_per_run`` against XLA's own figure for the compiled run, for every engine at several sizes.

The plan sizes chunks and refuses runs with ``bytes_per_run``; an estimate below what XLA allocates let a run
pass the check and then be killed by the OOM killer. XLA's ``memory_analysis()`` of the compiled run (its
arguments, outputs and temporaries) is an independent figure: the estimate must bound it, without wasting
more than half the memory it plans with.
"""

import jax
import pytest

import jaxbo
from jaxbo import engines, plan, train

#: (label, Config fields, engine): every registered engine (``test_every_registered_engine_has_a_case`` holds
#: the list to ``engines.REGISTRY``) at the settings whose runs the plan sizes.
CASES = [
    ("primal, W = I", {"attention": "identity"}, "primal"),
    ("primal, W trained", {"attention": "trained"}, "primal"),
    ("kernel, W trained", {"attention": "trained"}, "kernel"),
    ("reduced kernel, W trained", {"attention": "trained", "weight_init": "gaussian"}, "reduced_kernel"),
    ("reduced", {"attention": "identity"}, "reduced"),
    ("encoder", {"model": "encoder", "mlp_width": 256}, "encoder"),
    ("encoder, 3 layers", {"model": "encoder", "mlp_width": 256, "layers": 3}, "encoder"),
    (
        "reduced, 4 heads, trained head, random start",
        {"heads": 4, "train_head": True, "query_init_std": 0.1},
        "reduced",
    ),
    ("primal, 2 heads, W trained", {"heads": 2, "attention": "trained", "train_head": True}, "primal"),
    ("causal, sequence noise", {"model": "causal"}, "causal"),
    ("causal reduced, token noise", {"model": "causal", "target_noise": "token"}, "causal_reduced"),
]


def test_every_registered_engine_has_a_case():
    covered = {(fields.get("model", "attention"), engine) for _, fields, engine in CASES}
    for engine in engines.REGISTRY:
        assert (engine.model, engine.name) in covered, f"the {engine.name} engine has no case in tests/test_memory.py"
    for label, fields, engine in CASES:  # and each case runs the engine it names, exactly
        assert not engines.lookup(fields.get("model", "attention"), engine).reasons(jaxbo.Config(**fields), None), label


def xla_bytes(config: jaxbo.Config, engine: str, log_history: bool) -> int:
    """Arguments + outputs + temporaries of the compiled run, as XLA plans them (no run is executed)."""
    engine = plan.engine_of(config, engine)
    width = engine.width(config)

    def one(key, traced):
        return train.run(key, traced, width=width, engine=engine, log_history=log_history)

    lowered = jax.jit(one).lower(jax.random.key(0), train.jit_config(config, engine))
    stats = lowered.compile().memory_analysis()
    return (
        stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
    )


def check(fields: dict, engine: str, d: int, log_history: bool) -> None:
    config = jaxbo.Config(d=d, n_test=200, **fields)
    measured = xla_bytes(config, engine, log_history)
    estimate = plan.bytes_per_run(config, engine, d, log_history)
    assert measured <= estimate <= 2 * measured, (
        f"bytes_per_run = {estimate:,} B against XLA's {measured:,} B for {fields}, engine {engine}, d = {d}, "
        f"histories {log_history}: expected between 1× and 2× of it"
    )


#: The inner loop checks the two engines whose estimates grow with d² (the reported OOM) and with d; the slow
#: test below checks every engine at two sizes, with and without histories.
FAST = [case for case in CASES if case[0] in ("kernel, W trained", "primal, W = I")]


@pytest.mark.parametrize(("label", "fields", "engine"), FAST, ids=[case[0] for case in FAST])
def test_estimate_bounds_xla_memory_analysis(label, fields, engine):
    check(fields, engine, 384, log_history=False)


@pytest.mark.slow
@pytest.mark.parametrize(("label", "fields", "engine"), CASES, ids=[case[0] for case in CASES])
@pytest.mark.parametrize("d", [128, 1500])
@pytest.mark.parametrize("log_history", [False, True])
def test_estimate_bounds_xla_memory_analysis_at_several_sizes(label, fields, engine, d, log_history):
    check(fields, engine, d, log_history)
