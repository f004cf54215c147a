"""The exact kernel form of gradient descent on (W, p) from p⁽⁰⁾ = 0 (docs/exact_reduction.md, "Trained W").

Write X (N × d, N = n·T) for the training tokens, w (N,) for the per-token loss weights of ``loss.token_weights``
and u = Xᵀw, so ∇_p L = W u and ∇_W L = p uᵀ. With M = W₀Xᵀ (d × N), K = MᵀM and G = XXᵀ, gradient descent
keeps p = Mβ and W = W₀ + M A X for β ∈ R^N and A ∈ R^{N×N}; one step from (β, A) is

    β ← β − lr (w + A G w),    A ← A − lr β wᵀ     (both from the old β, A: simultaneous updates)

and the training logits are a = X Wᵀ p = K β + G Aᵀ K β. With W fixed (``attention="fixed"``) A stays 0. A step
costs O(N²) whatever d is; d enters once per run, in M (O(d²N)) and in the test query q = Wᵀp = W₀ᵀMβ + XᵀAᵀKβ.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbo.model import PRECISION


@dataclasses.dataclass(frozen=True)
class KernelData:
    """What a run's steps need, formed once from W₀ and the training tokens.

    Attributes:
      M: W₀Xᵀ, (width, N).
      K: MᵀM = X W₀ᵀW₀ Xᵀ, (N, N).
      G: XXᵀ, (N, N).
      flat: X, (N, width).
      W0: W₀, (width, width).
    """

    M: jax.Array
    K: jax.Array
    G: jax.Array
    flat: jax.Array
    W0: jax.Array


jax.tree_util.register_dataclass(KernelData, data_fields=["M", "K", "G", "flat", "W0"], meta_fields=[])


def prepare(W0: jax.Array, tokens: jax.Array) -> KernelData:
    """M, K and G of initial weights W₀ (width, width) and training tokens (n, T, width)."""
    flat = tokens.reshape(-1, tokens.shape[-1])
    M = jnp.matmul(W0, flat.T, precision=PRECISION)
    return KernelData(
        M=M,
        K=jnp.matmul(M.T, M, precision=PRECISION),
        G=jnp.matmul(flat, flat.T, precision=PRECISION),
        flat=flat,
        W0=W0,
    )


def logits(data: KernelData, beta: jax.Array, A: jax.Array) -> jax.Array:
    """Training logits a = X Wᵀ p = Kβ + G Aᵀ Kβ, (N,)."""
    k_beta = jnp.matmul(data.K, beta, precision=PRECISION)
    return k_beta + jnp.matmul(data.G, jnp.matmul(A.T, k_beta, precision=PRECISION), precision=PRECISION)


def step(data: KernelData, beta: jax.Array, A: jax.Array, weights: jax.Array, lr, train_weights: bool):
    """One gradient-descent step on (p, W) in kernel form: (β, A) → (β', A'), weights w (N,)."""
    if not train_weights:
        return beta - lr * weights, A
    g_w = jnp.matmul(data.G, weights, precision=PRECISION)
    new_beta = beta - lr * (weights + jnp.matmul(A, g_w, precision=PRECISION))
    return new_beta, A - lr * jnp.outer(beta, weights)


def query(data: KernelData, beta: jax.Array, A: jax.Array) -> jax.Array:
    """q = Wᵀp = W₀ᵀMβ + XᵀAᵀKβ, (width,): all a test token needs besides ν."""
    k_beta = jnp.matmul(data.K, beta, precision=PRECISION)
    from_initial = jnp.matmul(data.W0.T, jnp.matmul(data.M, beta, precision=PRECISION), precision=PRECISION)
    return from_initial + jnp.matmul(data.flat.T, jnp.matmul(A.T, k_beta, precision=PRECISION), precision=PRECISION)


def parameters(data: KernelData, beta: jax.Array, A: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(p, W) = (Mβ, W₀ + M A X), (width,) and (width, width): the parameters themselves, O(d²N)."""
    p = jnp.matmul(data.M, beta, precision=PRECISION)
    W = data.W0 + jnp.matmul(jnp.matmul(data.M, A, precision=PRECISION), data.flat, precision=PRECISION)
    return p, W
