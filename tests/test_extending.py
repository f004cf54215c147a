"""docs/architecture.md's "How to add an engine" and "How to add a model", run as written.

The code blocks after ``<!-- example: engine -->`` and ``<!-- example: model -->`` are executed here, so the
worked examples cannot drift from the interface they document.
"""

import dataclasses
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_reduced import exact_reduction

import jaxbo
from jaxbo import config as config_lib
from jaxbo import data, engines, memory, train
from jaxbo import loss as loss_lib
from jaxbo import model as model_lib

ARCHITECTURE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
SMALL = jaxbo.Config(n_train=10, T=5, d=30, n_test=64, steps=60, log_every=20, signal_norm=6.0)
GRID = {"d": [20, 30], "signal_norm": [2.0, 8.0]}


def example(name: str) -> dict:
    """The namespace of docs/architecture.md's ``<!-- example: name -->`` code block after running it."""
    text = ARCHITECTURE.read_text()
    found = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)\n```", text, re.DOTALL)
    assert found, f"docs/architecture.md has no '<!-- example: {name} -->' python block"
    namespace = {"__name__": f"architecture_example_{name}"}
    exec(compile(found.group(1), f"docs/architecture.md ({name})", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def plain():
    return example("engine")["PLAIN"]


@pytest.fixture(scope="module")
def mean_pool():
    return example("model")["MEAN_POOL"]


def test_a_new_engine_runs_through_sweep_and_equals_the_primal_engine(plain):
    mine = jaxbo.sweep(GRID, seeds=2, config=SMALL, key=1, engine=plain, progress=False)
    reference = jaxbo.sweep(GRID, seeds=2, config=SMALL, key=1, engine="primal", progress=False)
    assert mine.metadata["engine"] == "plain"
    assert mine.metadata["plan"]["groups"] == reference.metadata["plan"]["groups"]  # the same d buckets
    for name in ("train_loss", "test_loss", "p_norm", "cos_mu1", "attention_clean", "saturation_noisy"):
        np.testing.assert_allclose(mine.final[name], reference.final[name], rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(mine.regime, reference.regime)
    run = jaxbo.simulate(3, SMALL, engine=plain)
    assert run.engine == "plain" and run.history.train_loss.shape == (SMALL.n_logs,)


def test_a_new_engine_is_refused_where_it_is_not_exact_and_can_be_registered(plain):
    with pytest.raises(ValueError, match=r"engine = 'plain' is not exact here: Config\.attention = 'trained'"):
        jaxbo.simulate(0, SMALL.replace(attention="trained"), engine=plain)
    with pytest.raises(ValueError, match=r"Config\.normaliser = 'sigmoid' \(the plain engine does not declare"):
        jaxbo.simulate(0, SMALL.replace(normaliser="sigmoid"), engine=plain)
    registry = (plain, *engines.REGISTRY)
    assert "plain" in engines.names(registry)
    assert engines.resolve(SMALL, None, "plain", registry) is plain
    assert engines.resolve(SMALL, None, "auto", registry) is plain  # first in the registry and exact
    assert engines.resolve(SMALL.replace(attention="fixed"), None, "auto", registry).name == "kernel"
    # A memory refusal names the engine that refused, though it borrows the primal engine's words.
    tiny = memory.Backend(platform="gpu", device_count=1, memory_bytes=2**20)
    with pytest.raises(ValueError, match=r"for one plain run"):
        memory.check_fits(SMALL.replace(d=4000), plain, 4000, True, tiny)

    # Derived from the primal engine, it did not inherit the primal engine's claim to compute the limit.
    assert engines.primal.ENGINE.limit and not plain.limit
    with pytest.raises(ValueError, match=r"plain engine of Config\.model = 'attention' computes no limit"):
        jaxbo.simulate(0, SMALL, engine=plain, limit=True)


def test_engine_fields_fall_in_four_groups_and_derive_inherits_only_what_carries_over():
    groups = engines.base.ENGINE_GROUPS
    grouped = [name for names in groups.values() for name in names]
    assert sorted(grouped) == sorted(field.name for field in dataclasses.fields(engines.Engine))
    assert len(grouped) == len(set(grouped))
    primal = engines.primal.ENGINE
    changes = dict(name="copy", summary="a copy", start=primal.start, not_exact=primal.not_exact)
    copy = primal.derive(**changes)
    # The claims start empty; cost, planning, sampling and identity's presentation carry over.
    assert (copy.settings, copy.limit, copy.shared_step, copy.former_names) == (frozenset(), False, None, ())
    for name in (*groups["cost and planning"], "sample", "title", "coordinates", "model"):
        assert getattr(copy, name) is getattr(primal, name), name
    assert copy.reasons(SMALL, None) == [] and copy.reasons(SMALL.replace(heads=2), None)
    with pytest.raises(TypeError, match=r"needs \['not_exact'\]"):
        primal.derive(**{key: value for key, value in changes.items() if key != "not_exact"})
    with pytest.raises(TypeError, match=r"no field\(s\) \['widht'\]"):
        primal.derive(**changes, widht=primal.width)
    # The kernel engine is such a derivation: what it declares again, it earned.
    assert engines.kernel.ENGINE.limit and engines.kernel.ENGINE.settings == primal.settings
    assert engines.kernel.ENGINE.bytes_per_run is not primal.bytes_per_run


def numpy_descent(config, key, width):
    """Gradient descent on w of f(X) = wᵀ mean_t x_t in float64 numpy, on the data the engine samples."""
    keys = engines.RunKeys(*data.run_keys(jax.random.key(key)))
    train_set = data.sample(keys.train, config, config.n_train, flip=True, width=width)
    pooled = np.asarray(train_set.tokens, np.float64).mean(axis=1)
    labels = np.asarray(train_set.labels, np.float64)
    w = np.zeros(width)
    for _ in range(config.steps):
        margins = labels * (pooled @ w)
        w -= config.lr * (pooled.T @ (-labels / (1 + np.exp(margins)))) / len(labels)
    return w, np.mean(np.logaddexp(0.0, -labels * (pooled @ w)))


def test_a_new_model_trains_as_its_numpy_reference_through_simulate_sweep_and_plot(mean_pool, monkeypatch):
    monkeypatch.setattr(config_lib, "MODELS", (*config_lib.MODELS, "mean_pool"))
    config = SMALL.replace(model="mean_pool", lr=0.5, steps=200, log_every=50)
    run = jaxbo.simulate(4, config, engine=mean_pool)
    w, final_loss = numpy_descent(config, 4, config.d)
    np.testing.assert_allclose(run.params, w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(run.final.train_loss, final_loss, rtol=1e-4)
    assert np.isnan(run.final.p_norm) and np.isnan(run.final.attention_test).all()
    assert run.coordinates.startswith("primal:")

    result = jaxbo.sweep(GRID, seeds=2, config=config, key=2, engine=mean_pool, progress=False)
    assert result.final["train_accuracy"].shape == (2, 2, 2) and np.isnan(result.final["gap_clean"]).all()
    coordinates = {"d": 20, "signal_norm": 8.0}
    alone = jaxbo.simulate(
        jaxbo.sweep_module.run_key(2, 1, coordinates), config.replace(**coordinates), engine=mean_pool
    )
    np.testing.assert_allclose(result.final["train_loss"][0, 1, 1], alone.final.train_loss, rtol=1e-5)
    assert set(np.unique(result.regime)) <= {0, 1, 2}
    figure = jaxbo.plot.phase_diagram(result)
    assert figure.get_suptitle().startswith("mean_pool model")  # not registered: named by its Config.model
    with pytest.raises(ValueError, match=r"engine = 'reduced' does not exist for Config\.model = 'mean_pool'"):
        jaxbo.simulate(0, config, engine="reduced")


def test_engines_refuse_a_model_they_do_not_train(mean_pool):
    with pytest.raises(ValueError, match=r"trains Config\.model = 'mean_pool', not Config\.model = 'attention'"):
        jaxbo.simulate(0, SMALL, engine=mean_pool)
    with pytest.raises(TypeError, match="engine must be a name"):
        train.checked_engine(SMALL, None, 3)


@pytest.fixture
def tanh(monkeypatch):
    """docs/architecture.md's tanh φ, registered as the example says (its name in config.NORMALISERS)."""
    normaliser = example("normaliser")["TANH"]
    monkeypatch.setattr(config_lib, "NORMALISERS", (*config_lib.NORMALISERS, "tanh"))
    monkeypatch.setitem(model_lib.NORMALISERS, "tanh", normaliser)
    return SMALL.replace(normaliser="tanh", noise_rate=0.3, signal_norm=3.0, d=60)


def test_a_new_normaliser_runs_on_every_attention_engine_exactly(tanh):
    with jax.enable_x64(True):  # its analytic gradient against jax.grad
        dataset = data.sample(jax.random.key(1), tanh.replace(d=12), tanh.n_train, flip=True)
        tokens, labels = (jnp.asarray(a, jnp.float64) for a in (dataset.tokens, dataset.labels))
        params = model_lib.Params(p=0.5 * jax.random.normal(jax.random.key(2), (12,), jnp.float64), nu=tokens[0, 0])
        analytic = loss_lib.analytic_grad(params, tokens, labels, False, normaliser="tanh")["p"]
        autodiff = loss_lib.autodiff_grad(params, tokens, labels, False, "tanh")["p"]
        np.testing.assert_allclose(analytic, autodiff, rtol=1e-10, atol=1e-13)
    (primal_train, primal_test), (reduced_train, reduced_test) = exact_reduction(tanh, jax.random.key(4))
    keys = engines.RunKeys(*data.run_keys(jax.random.key(0)))
    runs = {}
    for name, (train_set, test_set) in {
        "primal": (primal_train, primal_test),
        "reduced": (reduced_train, reduced_test),
    }.items():
        params = model_lib.init_params(jax.random.key(0), tanh, train_set.tokens.shape[-1])
        trainer = engines.primal.descent_trainer(tanh, keys, params, train_set, test_set, None)
        if name == "reduced":
            trainer = engines.reduced.gram_trainer(tanh, keys, params, train_set, test_set)
        runs[name] = jax.jit(lambda trainer=trainer, train_set=train_set: train.train_from(tanh, trainer, train_set))()[
            1
        ]
    for field in ("train_loss", "test_loss", "p_norm", "attention_clean"):
        np.testing.assert_allclose(
            getattr(runs["reduced"], field), getattr(runs["primal"], field), rtol=2e-4, atol=2e-5
        )
    assert float(runs["primal"].p_norm[-1]) > 0 and not np.allclose(
        runs["primal"].train_loss, runs["primal"].train_loss[0]
    )
    for engine, config in (
        ("kernel", tanh.replace(attention="trained")),
        ("reduced_kernel", tanh.replace(attention="trained", weight_init="gaussian")),
    ):
        run = jaxbo.simulate(0, config)
        assert run.engine == engine and np.isfinite(np.asarray(run.history.train_loss)).all()
    assert jaxbo.simulate(0, tanh).engine == "reduced"
