"""The appendix's one-layer Transformer encoder (v3 Figures 6–7): parameters, forward pass, gradient descent.

The data are the paper's; the model replaces f(X) = νᵀXᵀsoftmax(XWᵀp) by the encoder of the authors' code
(``main_one_layer.py``; where it is more specific than the paper, this module follows it):

    sequence  [c; x_1; …; x_T]                     c the learnable [CLS] token (the analogue of p)
    attention z = c + W_V Σ_t a_t LN₁(x̃_t),  a = softmax over t of (W_Q LN₁(c))·(W_K LN₁(x̃_t)) / √d
    MLP       h = z + W₂ GELU(W₁ LN₂(z) + b₁) + b₂
    head      f(X) = wᵀ LN₃(h) + b

over x̃ ∈ {c, x_1, …, x_T}: a single head, pre-LayerNorm, no biases in Q, K, V, exact (erf) GELU, residual
connections, a final LayerNorm and a linear head read at [CLS]. All parameters are trained.

**Only [CLS]'s row is computed.** The head reads [CLS] alone, and after attention every operation is
per-token, so the other tokens' queries, attention outputs and MLPs never reach f. And [CLS] is one
parameter shared by every sample, so its query q = W_Q LN₁(c) and the vector r = W_Kᵀq/√d are computed once
per step: the logits are LN₁(x̃_t)·r and the value path is W_V applied to one attention-weighted mean per
sample. A step costs O(d² + n·d² + n·d·mlp_width + n·T·d) instead of the O(n·T·(d² + d·mlp_width)) of
evaluating every token; the same function (``tests/test_encoder.py`` checks it against a float64 numpy
encoder that evaluates every token, as PyTorch does).

**Initialisation, PyTorch's defaults** (as the authors' code gets them): every ``nn.Linear`` weight and bias
uniform in ±1/√fan_in (``kaiming_uniform_(a=√5)``); LayerNorm scale 1, shift 0, ε = 1e-5 (biased variance);
the [CLS] token standard normal (``torch.randn``), not 0 as p⁽⁰⁾ of the analysed model.

**Where the authors' code says more than the paper, it is followed:** [CLS] is a token of the sequence, so
it is a key and a value too (it attends to itself); it starts standard normal, where p⁽⁰⁾ = 0; the head
has a bias; the MLP has biases and its own LayerNorm; dropout is 0; the loss is log(1 + e^(−ỹf)), computed
here as softplus(−ỹf) (the same value, finite at any margin).

**Not padded.** LayerNorm averages over all d features and the scale is d^(−1/2), so zero-padding would
change the function: an encoder run's width is its d (``sweep`` gives each d its own group).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbo.config import Config
from jaxbo.loss import accuracy_and_loss, logistic_loss
from jaxbo.metrics import masked_mean, mean_gaps, role_attention
from jaxbo.model import PRECISION

#: LayerNorm's ε (PyTorch's default).
LAYER_NORM_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class EncoderParams:
    """Parameters of the one-layer encoder, d the embedding dimension, m the MLP width.

    Weights use PyTorch's (out, in) layout: a linear map is x ↦ W x.

    Attributes:
      cls: c, the [CLS] token, (d,).
      attention_norm_scale, attention_norm_bias: LN₁ before attention, (d,) each.
      query, key, value: W_Q, W_K, W_V, (d, d) each (no biases).
      mlp_norm_scale, mlp_norm_bias: LN₂ before the MLP, (d,) each.
      mlp_in, mlp_in_bias: W₁ (m, d), b₁ (m,).
      mlp_out, mlp_out_bias: W₂ (d, m), b₂ (d,). With m = 0 there is no MLP branch.
      final_norm_scale, final_norm_bias: LN₃, (d,) each.
      head, head_bias: w (d,), b ().
      lower: the blocks below this one, ``BlockParams`` stacked over L − 1 blocks, or None (L = 1, the
        appendix's encoder). The fields above are then the top block's, whose output at [CLS] the head reads.
    """

    cls: jax.Array
    attention_norm_scale: jax.Array
    attention_norm_bias: jax.Array
    query: jax.Array
    key: jax.Array
    value: jax.Array
    mlp_norm_scale: jax.Array
    mlp_norm_bias: jax.Array
    mlp_in: jax.Array
    mlp_in_bias: jax.Array
    mlp_out: jax.Array
    mlp_out_bias: jax.Array
    final_norm_scale: jax.Array
    final_norm_bias: jax.Array
    head: jax.Array
    head_bias: jax.Array
    lower: BlockParams | None = None

    @property
    def d(self) -> int:
        return self.cls.shape[-1]

    @property
    def layers(self) -> int:
        """L, the number of blocks."""
        return 1 if self.lower is None else 1 + self.lower.query.shape[0]

    @property
    def mlp_width(self) -> int:
        return self.mlp_in.shape[-2]


@dataclasses.dataclass(frozen=True)
class BlockParams:
    """The lower blocks of a deeper encoder, each stacked along a leading (L − 1,) axis (bottom block first):
    LN₁, W_Q, W_K, W_V, LN₂ and the MLP, as the fields of ``EncoderParams`` with the same names."""

    attention_norm_scale: jax.Array
    attention_norm_bias: jax.Array
    query: jax.Array
    key: jax.Array
    value: jax.Array
    mlp_norm_scale: jax.Array
    mlp_norm_bias: jax.Array
    mlp_in: jax.Array
    mlp_in_bias: jax.Array
    mlp_out: jax.Array
    mlp_out_bias: jax.Array


_FIELDS = [f.name for f in dataclasses.fields(EncoderParams)]
_BLOCK_FIELDS = [f.name for f in dataclasses.fields(BlockParams)]
jax.tree_util.register_dataclass(EncoderParams, data_fields=_FIELDS, meta_fields=[])
jax.tree_util.register_dataclass(BlockParams, data_fields=_BLOCK_FIELDS, meta_fields=[])
#: The stream of the lower blocks' draws (block ℓ: ``fold_in(fold_in(key, _LOWER_STREAM), ℓ)``).
_LOWER_STREAM = 1000


def init_params(key: jax.Array, d: int, mlp_width: int, layers: int = 1) -> EncoderParams:
    """PyTorch-default initialisation (module docstring) of an encoder of width ``d``, MLP width ``mlp_width``
    and ``layers`` blocks.

    Each parameter draws from ``fold_in(key, its index in EncoderParams)``, so the MLP width does not change
    the attention weights' draw, and the top block of a deeper encoder is drawn as the one-block encoder is;
    lower block ℓ draws from ``fold_in(fold_in(key, _LOWER_STREAM), ℓ)`` the same way.
    """
    top = _init_top(key, d, mlp_width)
    if layers == 1:
        return top
    blocks = [
        _init_block(jax.random.fold_in(jax.random.fold_in(key, _LOWER_STREAM), b), d, mlp_width)
        for b in range(layers - 1)
    ]
    return dataclasses.replace(top, lower=jax.tree.map(lambda *leaves: jnp.stack(leaves), *blocks))


def _init_block(key: jax.Array, d: int, mlp_width: int) -> BlockParams:
    """One lower block, PyTorch's defaults (as ``_init_top``'s fields of the same names)."""
    top = _init_top(key, d, mlp_width)
    return BlockParams(**{name: getattr(top, name) for name in _BLOCK_FIELDS})


def _init_top(key: jax.Array, d: int, mlp_width: int) -> EncoderParams:
    """The one-block encoder's parameters (the top block of a deeper one), PyTorch's defaults."""

    def uniform(name: str, shape: tuple[int, ...], fan_in: int) -> jax.Array:
        bound = 1.0 / jnp.sqrt(jnp.float32(max(fan_in, 1)))
        return jax.random.uniform(_field_key(key, name), shape, jnp.float32, -bound, bound)

    ones, zeros = jnp.ones(d, jnp.float32), jnp.zeros(d, jnp.float32)
    return EncoderParams(
        cls=jax.random.normal(_field_key(key, "cls"), (d,), jnp.float32),
        attention_norm_scale=ones,
        attention_norm_bias=zeros,
        query=uniform("query", (d, d), d),
        key=uniform("key", (d, d), d),
        value=uniform("value", (d, d), d),
        mlp_norm_scale=ones,
        mlp_norm_bias=zeros,
        mlp_in=uniform("mlp_in", (mlp_width, d), d),
        mlp_in_bias=uniform("mlp_in_bias", (mlp_width,), d),
        mlp_out=uniform("mlp_out", (d, mlp_width), mlp_width),
        mlp_out_bias=uniform("mlp_out_bias", (d,), mlp_width) if mlp_width else zeros,
        final_norm_scale=ones,
        final_norm_bias=zeros,
        head=uniform("head", (d,), d),
        head_bias=uniform("head_bias", (), d),
    )


def _field_key(key: jax.Array, name: str) -> jax.Array:
    return jax.random.fold_in(key, _FIELDS.index(name))


def mlp(weights, hidden: jax.Array, norm, residual: bool) -> jax.Array:
    """The MLP sub-block on ``hidden`` (…, d): h + W₂ GELU(W₁ LN₂(h) + b₁) + b₂ (without ``residual``: the
    branch alone); h unchanged without an MLP (m = 0). ``weights``: ``EncoderParams`` or one block of
    ``BlockParams``; ``norm``: the caller's LayerNorm (or identity)."""
    if not weights.mlp_in.shape[-2]:
        return hidden
    normed_hidden = norm(hidden, weights.mlp_norm_scale, weights.mlp_norm_bias)
    inner = jnp.matmul(normed_hidden, weights.mlp_in.T, precision=PRECISION) + weights.mlp_in_bias
    activation = jax.nn.gelu(inner, approximate=False)  # PyTorch's nn.GELU() is the exact erf form
    branch = jnp.matmul(activation, weights.mlp_out.T, precision=PRECISION) + weights.mlp_out_bias
    return hidden + branch if residual else branch


def lower_blocks(params: EncoderParams, sequence: jax.Array, *, normalise=True, residual=True, cls_key=True):
    """The lower blocks on the whole sequence [c; x_1; …; x_T], (n, T + 1, d): every token's query, attention
    and MLP (pre-LN, residuals), as a ``lax.scan`` over the stacked blocks; returns the top block's input."""
    d = sequence.shape[-1]

    def norm(x, scale, bias):
        return layer_norm(x, scale, bias) if normalise else x

    def block(hidden, weights: BlockParams):
        normed = norm(hidden, weights.attention_norm_scale, weights.attention_norm_bias)
        query = jnp.matmul(normed, weights.query.T, precision=PRECISION)
        key = jnp.matmul(normed, weights.key.T, precision=PRECISION)
        scores = jnp.einsum("nid,njd->nij", query, key, precision=PRECISION) * d**-0.5
        if not cls_key:
            scores = scores.at[:, :, 0].set(-jnp.inf)
        mixed = jnp.einsum("nij,njd->nid", jax.nn.softmax(scores, axis=-1), normed, precision=PRECISION)
        attended = jnp.matmul(mixed, weights.value.T, precision=PRECISION)
        hidden = attended + hidden if residual else attended
        return mlp(weights, hidden, norm, residual), None

    hidden, _ = jax.lax.scan(block, sequence, params.lower)
    return hidden


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """LayerNorm over the last axis (biased variance, ε = 1e-5, as ``torch.nn.LayerNorm``)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    variance = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    return centred * jax.lax.rsqrt(variance + LAYER_NORM_EPS) * scale + bias


def forward(
    params: EncoderParams,
    tokens: jax.Array,
    *,
    normalise: bool = True,
    residual: bool = True,
    cls_key: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The encoder's output at [CLS] and [CLS]'s attention; the switches are the known-answer test's.

    Args:
      params: ``EncoderParams`` of width d (equal to the tokens' width).
      tokens: X, (n, T, d).
      normalise: apply LN₁, LN₂, LN₃ (off: identities).
      residual: residual connections (off: z = W_V Σ a_t x̃_t and h = MLP(z), the authors'
        ``use_skip_connection=False``).
      cls_key: [CLS] attends to itself too, as in the authors' code (off: only to x_1 … x_T).

    Returns:
      f (n,); [CLS]'s attention probabilities on x_1 … x_T, (n, T) (with ``cls_key`` they sum to 1 minus its
      attention on itself); their logits (n, T). With lower blocks (``params.lower``) these are the top
      block's: [CLS]'s attention on the lower blocks' outputs at positions 1 … T.
    """
    d = tokens.shape[-1]
    if params.lower is not None:
        cls = jnp.broadcast_to(params.cls, (tokens.shape[0], 1, d))
        switches = dict(normalise=normalise, residual=residual, cls_key=cls_key)
        hidden = lower_blocks(params, jnp.concatenate([cls, tokens], axis=1), **switches)
        return _top_block(params, hidden[:, 0], hidden[:, 1:], **switches)

    def norm(x, scale, bias):
        return layer_norm(x, scale, bias) if normalise else x

    cls = norm(params.cls, params.attention_norm_scale, params.attention_norm_bias)  # (d,)
    normed = norm(tokens, params.attention_norm_scale, params.attention_norm_bias)  # (n, T, d)
    query = jnp.matmul(params.query, cls, precision=PRECISION)
    # q·W_K x = (W_Kᵀ q)·x: one (d, d) product per step instead of one per token.
    key_query = jnp.matmul(query, params.key, precision=PRECISION) * d**-0.5
    token_logits = jnp.einsum("ntd,d->nt", normed, key_query, precision=PRECISION)
    if cls_key:
        cls_logit = jnp.dot(cls, key_query, precision=PRECISION)
        logits = jnp.concatenate([jnp.broadcast_to(cls_logit, (*token_logits.shape[:-1], 1)), token_logits], -1)
        attention = jax.nn.softmax(logits, axis=-1)
        self_attention, token_attention = attention[..., :1], attention[..., 1:]
    else:
        self_attention, token_attention = 0.0, jax.nn.softmax(token_logits, axis=-1)
    mixed = jnp.einsum("nt,ntd->nd", token_attention, normed, precision=PRECISION) + self_attention * cls
    attended = jnp.matmul(mixed, params.value.T, precision=PRECISION)  # (n, d)
    hidden = attended + params.cls if residual else attended
    hidden = mlp(params, hidden, norm, residual)
    out = norm(hidden, params.final_norm_scale, params.final_norm_bias)
    f = jnp.matmul(out, params.head, precision=PRECISION) + params.head_bias
    return f, token_attention, token_logits


def _top_block(params: EncoderParams, cls_input, tokens, *, normalise: bool, residual: bool, cls_key: bool):
    """``forward``'s top block when [CLS]'s input differs per sample (below it, lower blocks): cls_input (n, d),
    tokens (n, T, d); only [CLS]'s row, as for one block."""
    d = tokens.shape[-1]

    def norm(x, scale, bias):
        return layer_norm(x, scale, bias) if normalise else x

    cls = norm(cls_input, params.attention_norm_scale, params.attention_norm_bias)  # (n, d)
    normed = norm(tokens, params.attention_norm_scale, params.attention_norm_bias)  # (n, T, d)
    query = jnp.matmul(cls, params.query.T, precision=PRECISION)
    key_query = jnp.matmul(query, params.key, precision=PRECISION) * d**-0.5  # (n, d): W_Kᵀq per sample
    token_logits = jnp.einsum("ntd,nd->nt", normed, key_query, precision=PRECISION)
    if cls_key:
        cls_logit = jnp.sum(cls * key_query, axis=-1, keepdims=True)
        attention = jax.nn.softmax(jnp.concatenate([cls_logit, token_logits], -1), axis=-1)
        self_attention, token_attention = attention[..., :1], attention[..., 1:]
    else:
        self_attention, token_attention = 0.0, jax.nn.softmax(token_logits, axis=-1)
    mixed = jnp.einsum("nt,ntd->nd", token_attention, normed, precision=PRECISION) + self_attention * cls
    attended = jnp.matmul(mixed, params.value.T, precision=PRECISION)
    hidden = attended + cls_input if residual else attended
    hidden = mlp(params, hidden, norm, residual)
    out = norm(hidden, params.final_norm_scale, params.final_norm_bias)
    f = jnp.matmul(out, params.head, precision=PRECISION) + params.head_bias
    return f, token_attention, token_logits


def empirical_loss(params: EncoderParams, tokens: jax.Array, labels: jax.Array) -> jax.Array:
    """L = (1/n) Σ_i ℓ(ỹ_i f(X_i)), scalar, for tokens (n, T, d) and observed labels ỹ (n,)."""
    f, _, _ = forward(params, tokens)
    return jnp.mean(logistic_loss(labels * f))


def train_metrics(params: EncoderParams, train) -> dict[str, jax.Array]:
    """The encoder's training-set metrics (names as ``jaxbo.Metrics`` fields that apply to it).

    The attention metrics are [CLS]'s: its attention mass per token role (``data.ROLE_NAMES``; over clean and
    noisy samples), the logit gaps of ``theory.mean_gaps`` on its logits, and ``max_attention``, the mean
    over samples of its largest attention probability on x_1 … x_T (the statistic the paper plots for
    real data).
    """
    f, attention, logits = forward(params, train.tokens)
    accuracy, loss = accuracy_and_loss(f, train.labels)
    fitted = train.labels * f > 0
    roles = role_attention(attention, train.roles)
    lead_relevant, lead_opposite = mean_gaps(logits, train.roles)
    clean = ~train.noisy_mask
    return dict(
        train_accuracy=accuracy,
        train_loss=loss,
        clean_accuracy=masked_mean(fitted, clean),
        noisy_fit=masked_mean(fitted, train.noisy_mask),
        attention_clean=masked_mean(roles, clean),
        attention_noisy=masked_mean(roles, train.noisy_mask),
        gap_clean=masked_mean(lead_relevant, clean),
        gap_noisy=masked_mean(lead_opposite, train.noisy_mask),
        max_attention=jnp.mean(jnp.max(attention, axis=-1)),
    )


def test_metrics(params: EncoderParams, test) -> dict[str, jax.Array]:
    """Test accuracy and loss, and [CLS]'s mean attention per role on the test set."""
    f, attention, _ = forward(params, test.tokens)
    accuracy, loss = accuracy_and_loss(f, test.labels)
    roles = jnp.mean(role_attention(attention, test.roles), axis=0)
    return dict(test_accuracy=accuracy, test_loss=loss, attention_test=roles)


def parameter_count(d: int, mlp_width: int, layers: int = 1) -> int:
    """Number of parameters of the encoder (``EncoderParams``) of width d, MLP width m and L blocks: the
    one-block encoder's 3d² + 2dm + m + 9d + 1, and 3d² + 2dm + m + 5d per further block."""
    return (
        3 * d * d
        + 2 * d * mlp_width
        + mlp_width
        + 9 * d
        + 1
        + (layers - 1) * (3 * d * d + 2 * d * mlp_width + mlp_width + 5 * d)
    )


def flops_per_step(config: Config, d: int) -> int:
    """Floating-point operations of one training step at width ``d`` (forward and backward, matrix products
    only; backward counted as twice the forward): 2·(2d² + n·d² + 2·n·d·m + 2·n·(T+1)·d) · 3 for the top
    block, and 2·(n(T+1)·(3d² + 2(T+1)d + 2dm)) · 3 for each lower block (every token's row)."""
    n, m, T = config.n_train, config.mlp_width, config.T
    forward_multiply_adds = 2 * d * d + n * d * d + 2 * n * d * m + 2 * n * (T + 1) * d
    lower = n * (T + 1) * (3 * d * d + 2 * (T + 1) * d + 2 * d * m)
    return 2 * (forward_multiply_adds + (config.layers - 1) * lower) * 3
