"""Engines: the ways to train a model, one file each, and the registry ``engine="auto"`` chooses from.

An engine is an ``Engine`` (``jaxbo.engines.base``): how its runs are sampled, started, sized and costed, and
when it is exact. ``resolve(config, optimizer, name)`` returns the engine a run uses. To add one, write its file
and add one line to ``REGISTRY`` (docs/architecture.md, "How to add an engine"); an ``Engine`` object can also be
passed as ``engine=`` to ``simulate``, ``make_run`` and ``sweep`` without registering it.
"""

from __future__ import annotations

import warnings

from jaxbo.config import Config
from jaxbo.engines import causal, causal_reduced, encoder, kernel, primal, reduced, reduced_kernel
from jaxbo.engines.base import Engine, RunKeys, SharedStep, Trainer

__all__ = ["AUTO", "REGISTRY", "Engine", "RunKeys", "SharedStep", "Trainer", "for_model", "lookup", "names", "resolve"]

#: Every registered engine. For each model, ``engine="auto"`` takes the first one that is exact, so the
#: cheapest come first.
REGISTRY: tuple[Engine, ...] = (
    reduced.ENGINE,
    reduced_kernel.ENGINE,
    kernel.ENGINE,
    primal.ENGINE,
    encoder.ENGINE,
    causal_reduced.ENGINE,
    causal.ENGINE,
)

AUTO = "auto"


def names(registry: tuple[Engine, ...] = REGISTRY) -> tuple[str, ...]:
    """Every name ``engine=`` accepts: ``"auto"`` and the registered engines' names (and former names), in
    registry order."""
    every = (name for engine in registry for name in (engine.name, *engine.former_names))
    return (AUTO, *dict.fromkeys(every))


def for_model(model: str, registry: tuple[Engine, ...] = REGISTRY) -> tuple[Engine, ...]:
    """The registered engines of ``Config.model = model``, in ``auto``'s order."""
    return tuple(engine for engine in registry if engine.model == model)


def lookup(model: str, name: str, registry: tuple[Engine, ...] = REGISTRY) -> Engine:
    """The engine called ``name`` for ``model``; ``ValueError`` naming what exists."""
    if name not in names(registry):
        raise ValueError(f"engine = {name!r} is unknown: allowed values are {names(registry)}")
    for engine in for_model(model, registry):
        if engine.name == name:
            return engine
    for engine in for_model(model, registry):
        if name in engine.former_names:
            warnings.warn(
                f"engine = {name!r} for Config.model = {model!r} is now engine = {engine.name!r}; the old name goes "
                "in 0.6",
                DeprecationWarning,
                stacklevel=3,
            )
            return engine
    available = tuple(engine.name for engine in for_model(model, registry))
    raise ValueError(
        f"engine = {name!r} does not exist for Config.model = {model!r}: its engines are {available}. "
        f"Use engine='auto' or one of those."
    )


def resolve(config: Config, optimizer, engine: str | Engine, registry: tuple[Engine, ...] = REGISTRY) -> Engine:
    """The engine a run uses: ``"auto"`` means the first exact engine of ``config.model`` in ``registry``
    (the cheapest); a named or given engine that is not exact here raises ``ValueError`` with its reasons."""
    if isinstance(engine, Engine):
        if engine.model != config.model:
            raise ValueError(
                f"engine {engine.name!r} trains Config.model = {engine.model!r}, not Config.model = {config.model!r}"
            )
        chosen = engine
    elif not isinstance(engine, str):
        raise TypeError(f"engine must be a name in {names(registry)} or an Engine, got {type(engine).__name__}")
    elif engine == AUTO:
        for candidate in for_model(config.model, registry):
            if not candidate.reasons(config, optimizer):
                return candidate
        raise ValueError(f"no registered engine is exact for Config.model = {config.model!r} with this optimizer")
    else:
        chosen = lookup(config.model, engine, registry)
    reasons = chosen.reasons(config, optimizer)
    if reasons:
        exact = [
            c.name for c in for_model(config.model, registry) if c is not chosen and not c.reasons(config, optimizer)
        ]
        alternatives = " or ".join(repr(name) for name in (*exact, AUTO))
        raise ValueError(f"engine = {chosen.name!r} is not exact here: {'; '.join(reasons)}. Use {alternatives}.")
    return chosen
