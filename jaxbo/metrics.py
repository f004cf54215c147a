"""What a run records: ``Metrics``, the statistics computed inside the training loop, and the attention
model's metrics of a training and a test set.

The statistics (attention per role, 𝔖, logit gaps) are the paper's quantities (docs/model.md §5) as they are
measured on a batch of samples; ``jaxbo.theory`` re-exports them beside the formulas they enter.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxbo.data import RELEVANT, ROLE_NAMES, WEAK_OPPOSITE
from jaxbo.loss import accuracy_and_loss
from jaxbo.model import Params, effective_query, head_mean, normalise, scores_along


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Metrics of a model at one time; in a history every field gains a leading axis (n_logs,).

    Accuracies count f = 0 as wrong. A *noisy* sample is fitted when the model predicts its flipped label ỹ.

    For the encoder (``Config.model = "encoder"``) the attention fields are the [CLS] token's attention on
    x_1 … x_T (per role they then sum to 1 minus [CLS]'s attention on itself) and the gaps are read from its
    logits; ``p_norm``, ``cos_mu1``, ``cos_mu2``, ``saturation_clean`` and ``saturation_noisy`` belong to the
    analysed model's query p and gradient and are NaN. A model that does not measure a field leaves it NaN
    (``complete``).

    Attributes:
      train_accuracy: fraction of training samples with ỹ f > 0.
      train_loss: empirical logistic loss L(p).
      test_accuracy: fraction of (clean) test samples with y f > 0.
      test_loss: logistic loss on the test set.
      clean_accuracy: accuracy on the clean training samples 𝒞.
      noisy_fit: fraction of noisy training samples 𝒩 fitted (ỹ f > 0); NaN when 𝒩 is empty.
      attention_clean: mean attention mass per role over 𝒞, (4,) in ``data.ROLE_NAMES`` order.
      attention_noisy: the same over 𝒩, (4,); NaN when 𝒩 is empty.
      attention_test: the same over the test set, (4,).
      p_norm: ‖p‖.
      cos_mu1: cos(p, μ₁) (0 while p = 0).
      cos_mu2: cos(p, μ₂) (0 while p = 0).
      saturation_clean: Σ_{τ<t} Σ_{i∈𝒞, y_i=c} 𝔖⁽ⁱ⁾(τ), (2,) for classes c = +1, −1: cumulative 𝔖 over every
        step so far, evaluated at the parameters each step started from.
      saturation_noisy: the same over 𝒩, (2,).
      gap_clean: mean over 𝒞 of Λ̄_i, the relevant token's logit lead over the mean of the others
        (``mean_gaps``).
      gap_noisy: mean over 𝒩 of Γ̄_i, the weakly-relevant opposite token's lead; NaN when 𝒩 is empty.
      max_attention: mean over training samples of the largest attention probability max_t s_t (the
        [CLS] token's, for the encoder: the statistic the paper plots for real data).
      head_attention: per head, the mean attention per role over 𝒞 and over 𝒩, (H, 2, 4) (H = 1 but for
        ``Config.heads``): the heads' specialisation statistic.
      fit_by_attention: fraction of 𝒩 fitted with its weakly-relevant opposite token the most attended (the
        attention's route to memorising a flipped label); NaN when 𝒩 is empty.
      fit_by_head: fraction of 𝒩 fitted with its relevant token the most attended (a route open only to a
        trained head, whose noise terms can flip the sign of f); NaN when 𝒩 is empty.
      head_noise_share: which part of the model supplies a fitted noisy sample's margin: the median over the
        fitted samples of 𝒩 of (ỹ Σ_h Σ_t s_{h,t} x_tᵀν_h⊥) / (ỹ f), ν_h⊥ the head's part outside span(μ₁, μ₂)
        (its coordinates beyond the first two, in every engine). 0 for the paper's fixed head, which lies in
        that span; near 1 when the head's memorised noise, not attention's choice of token, fits the label.
        NaN when no noisy sample is fitted.
    """

    train_accuracy: jax.Array
    train_loss: jax.Array
    test_accuracy: jax.Array
    test_loss: jax.Array
    clean_accuracy: jax.Array
    noisy_fit: jax.Array
    attention_clean: jax.Array
    attention_noisy: jax.Array
    attention_test: jax.Array
    p_norm: jax.Array
    cos_mu1: jax.Array
    cos_mu2: jax.Array
    saturation_clean: jax.Array
    saturation_noisy: jax.Array
    gap_clean: jax.Array
    gap_noisy: jax.Array
    max_attention: jax.Array
    head_attention: jax.Array
    fit_by_attention: jax.Array
    fit_by_head: jax.Array
    head_noise_share: jax.Array


jax.tree_util.register_dataclass(Metrics, data_fields=[f.name for f in dataclasses.fields(Metrics)], meta_fields=[])


@dataclasses.dataclass(frozen=True)
class CausalMetrics(Metrics):
    """``Metrics`` of the causal model (``Config.model = "causal"``, ``jaxbo.causal_model``): every field of
    ``Metrics`` and the per-position ones below; P = T − τ₀ + 1 predictions per sequence, one per prefix τ = τ₀
    … T.

    The shared fields read, for this model: ``train_accuracy``, ``clean_accuracy`` and ``noisy_fit`` over
    every training target (i, τ), clean ones and noisy ones; ``train_loss`` the mean over targets;
    ``test_accuracy`` the *worst* position's test accuracy (min over τ, so the regime's "≥ 1 − ε" holds at every
    τ) and ``test_loss`` the mean over positions; the attention fields (per role, 𝔖, gaps, fit_by_…) the
    attention of the last prefix τ = T (the paper's whole-sequence softmax) with that position's targets.

    Attributes:
      position_accuracy: test accuracy of f_τ at each prefix τ = τ₀ … T, (P,).
      position_fit: at each τ, the fraction of training targets fitted among those some token of the prefix can
        fit alone (a score of the target's sign), (P,); NaN where none can.
      attainable_fit: Σ_i fitted_i / Σ_i M_i, M_i the most targets of sequence i that one selection fits together
        (``causal_model.attainable``): 1 when the model fits everything any selection can (the regime's "every
        attainable target fitted").
      unattainable: Σ_i (P − M_i) / (nP): the fraction of training targets no selection can fit together with
        the rest of their sequence's best.
      noisy_unattainable: the fraction of noisy targets that no token of their prefix can fit even alone; NaN
        without noisy targets.
    """

    position_accuracy: jax.Array
    position_fit: jax.Array
    attainable_fit: jax.Array
    unattainable: jax.Array
    noisy_unattainable: jax.Array


jax.tree_util.register_dataclass(
    CausalMetrics, data_fields=[f.name for f in dataclasses.fields(CausalMetrics)], meta_fields=[]
)

#: Shape of one run's value of each ``Metrics`` field that is not a scalar.
FIELD_SHAPES = {
    "attention_clean": (len(ROLE_NAMES),),
    "attention_noisy": (len(ROLE_NAMES),),
    "attention_test": (len(ROLE_NAMES),),
    "saturation_clean": (2,),
    "saturation_noisy": (2,),
    "head_attention": (1, 2, len(ROLE_NAMES)),
}


def assemble(*parts: dict[str, jax.Array], nan_for_missing: bool = False, kind: type = Metrics) -> Metrics:
    """The one constructor of ``Metrics`` (and of its model-specific extensions, ``kind``, e.g.
    ``CausalMetrics``): from the parts a model measures (its training part, its test part…), each field in
    exactly one part. A field no part holds is an error, or NaN (float32, shape ``FIELD_SHAPES``) with
    ``nan_for_missing`` (``complete``); an unknown or repeated field is an error. Checked at trace time."""
    values: dict[str, jax.Array] = {}
    for part in parts:
        repeated = sorted(set(values) & set(part))
        if repeated:
            raise ValueError(f"Metrics fields {repeated} are measured twice")
        values.update(part)
    names = [field.name for field in dataclasses.fields(kind)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"Metrics has no field(s) {unknown}; fields are {names}")
    missing = [name for name in names if name not in values]
    if missing and not nan_for_missing:
        raise ValueError(f"Metrics fields {missing} are not measured (nan_for_missing=True fills them with NaN)")
    values.update({name: jnp.full(FIELD_SHAPES.get(name, ()), jnp.nan, jnp.float32) for name in missing})
    return kind(**values)


def complete(values: dict[str, jax.Array]) -> Metrics:
    """``Metrics`` of one run from the fields a model measures, NaN (float32) in every other field."""
    return assemble(values, nan_for_missing=True)


# --- statistics of a batch of samples -----------------------------------------------------------------------------


def role_attention(attention: jax.Array, roles: jax.Array) -> jax.Array:
    """Attention mass on each token role, (n, 4) for attention s (n, T) and roles (T,).

    Columns follow ``data.ROLE_NAMES``: relevant, weakly-relevant aligned, weakly-relevant opposite,
    irrelevant. Rows sum to 1.
    """
    one_hot = (roles[:, None] == jnp.arange(len(ROLE_NAMES))).astype(attention.dtype)  # (T, 4)
    return attention @ one_hot


def relevant_attention(attention: jax.Array, roles: jax.Array) -> jax.Array:
    """Σ_{t∈R} s_t: attention on the relevant tokens, (n,) for attention (n, T) and roles (T,)."""
    return jnp.sum(jnp.where(roles == RELEVANT, attention, 0.0), axis=-1)


def saturation(attention: jax.Array, roles: jax.Array) -> jax.Array:
    """𝔖⁽ⁱ⁾ = (Σ_{t∈R} s_t)(1 − Σ_{t∈R} s_t), (n,): the softmax's vanishing update factor on relevant tokens."""
    relevant = relevant_attention(attention, roles)
    return relevant * (1.0 - relevant)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` (n, …) over the rows where ``mask`` (n,) holds, (…); NaN when none does."""
    mask = mask.reshape(mask.shape + (1,) * (values.ndim - 1))
    return jnp.sum(jnp.where(mask, values, 0.0), axis=0) / jnp.sum(mask, axis=0)


def saturation_by_group(values: jax.Array, clean_labels: jax.Array, noisy_mask: jax.Array) -> jax.Array:
    """Sums of a per-sample quantity by (class, group), (2, 2).

    Rows: clean class y = +1, y = −1; columns: clean samples (𝒞), noisy samples (𝒩).

    Args:
      values: per-sample values, e.g. 𝔖⁽ⁱ⁾, (n,).
      clean_labels: y, (n,).
      noisy_mask: (n,) bool.
    """
    in_class = jnp.stack([clean_labels > 0, clean_labels < 0])  # (2, n)
    in_group = jnp.stack([~noisy_mask, noisy_mask])  # (2, n)
    members = in_class[:, None, :] & in_group[None, :, :]  # (2, 2, n)
    return jnp.sum(jnp.where(members, values, 0.0), axis=-1)


def attention_gaps(logits: jax.Array, roles: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Λ_{i,t} = a_{i,r} − a_{i,t} and Γ_{i,t} = a_{i,u} − a_{i,t}, each (n, T), for logits a (n, T).

    r is the first relevant token and u the first weakly-relevant opposite token (``roles``: (T,)); if the
    layout has no opposite token, Γ is NaN. (Reading taken: the gaps are gaps of attention logits
    a_t = x_tᵀWᵀp; Λ is what clean samples need, Γ what noisy samples need to be fitted.)
    """
    relevant = jnp.argmax(roles == RELEVANT)
    has_opposite = jnp.any(roles == WEAK_OPPOSITE)
    opposite = jnp.argmax(roles == WEAK_OPPOSITE)
    lam = logits[..., relevant, None] - logits
    gamma = jnp.where(has_opposite, logits[..., opposite, None] - logits, jnp.nan)
    return lam, gamma


def mean_gaps(logits: jax.Array, roles: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Λ̄_i = a_{i,r} − mean_{t≠r} a_{i,t} and Γ̄_i = a_{i,u} − mean_{t≠u} a_{i,t}, each (n,), for logits (n, T).

    Sample i's relevant token r (first weak-opposite token u) ahead of the mean of its other tokens: the x of
    the growth function's model, where one token leads the others by x. Γ̄ is NaN without an opposite token.
    """
    lam, gamma = attention_gaps(logits, roles)
    others = logits.shape[-1] - 1
    return jnp.sum(lam, axis=-1) / others, jnp.sum(gamma, axis=-1) / others


# --- the attention model's metrics --------------------------------------------------------------------------------


def attention_train_metrics(
    params: Params, train, train_gamma, saturation_totals, query=None, normaliser: str = "softmax"
) -> dict[str, jax.Array]:
    """Training-set and parameter metrics of the attention model at ``params`` (one head or H on a leading axis).

    Args:
      params: ``Params``; ``params.p`` gives ‖p‖ and cos(p, μ_c) (its first two coordinates lie on μ₁, μ₂).
      train: ``data.Dataset``, tokens (n, T, width).
      train_gamma: γ = Xν, (n, T) (per head (H, n, T)), precomputed once per run while ν is fixed.
      saturation_totals: (n,) Σ_τ 𝔖⁽ⁱ⁾(τ) per sample, grouped by class and group here rather than every step.
      query: Wᵀp, (width,) (per head (H, width)), where the caller has it cheaper than from ``params``.
      normaliser: φ (``model.normalise``).
    """
    query = effective_query(params) if query is None else query
    logits = scores_along(train.tokens, query)
    # A head outside span(μ₁, μ₂) (trained, or from a random start) supplies part of a margin by itself.
    trained_head = params.nu.ndim > 1
    outside = scores_along(train.tokens[..., 2:], params.nu[..., 2:]) if trained_head else None
    return train_metrics_of_logits(logits, params.p, train, train_gamma, saturation_totals, normaliser, outside)


def train_metrics_of_logits(
    logits, p, train, train_gamma, saturation_totals, normaliser: str = "softmax", outside_gamma=None
) -> dict[str, jax.Array]:
    """``attention_train_metrics`` from the training logits a = XWᵀp, (n, T) or per head (H, n, T), and p,
    (width,) or (H, width), where the caller has the logits cheaper than from the tokens (``train.tokens`` is
    not read).

    With heads, attention per role, gaps and the largest attention are means over heads; ``p_norm`` is the
    root mean square of ‖p_h‖, cos(p, μ_c) the mean of cos(p_h, μ_c); ``head_attention`` (H, 2, 4) holds each
    head's attention per role on clean and on noisy samples (the specialisation statistic). ``outside_gamma``:
    the scores x_tᵀν_h⊥ of the heads' parts outside span(μ₁, μ₂) (``Metrics.head_noise_share``), None for the
    paper's head, which has none.
    """
    heads = logits.ndim == 3
    saturation_sums = saturation_by_group(saturation_totals, train.clean_labels, train.noisy_mask)
    s_train = normalise(logits, normaliser)
    f_train = jnp.sum(s_train * train_gamma, axis=(0, 2) if heads else -1)
    lead_relevant, lead_opposite = mean_gaps(logits, train.roles)
    train_accuracy, train_loss = accuracy_and_loss(f_train, train.labels)
    fitted = train.labels * f_train > 0
    clean, noisy = ~train.noisy_mask, train.noisy_mask
    roles_train = role_attention(s_train, train.roles)  # (n, 4), per head (H, n, 4)
    attention_clean = masked_mean(head_mean(roles_train, heads), clean)
    attention_noisy = masked_mean(head_mean(roles_train, heads), noisy)
    if heads:
        per_head = [jax.vmap(masked_mean, in_axes=(0, None))(roles_train, mask) for mask in (clean, noisy)]
        head_attention = jnp.stack(per_head, 1)
    else:
        head_attention = jnp.stack([attention_clean, attention_noisy])[None]
    top = train.roles[jnp.argmax(head_mean(s_train, heads), axis=-1)]  # the role of each sample's most-attended token
    norms = jnp.linalg.norm(p, axis=-1)
    safe_norm = jnp.where(norms > 0, norms, 1.0)
    if outside_gamma is None:
        # The fixed head ν ∝ e₁ − e₂ has no part outside span(μ₁, μ₂): its share is 0 wherever one is defined.
        share = jnp.where(jnp.any(fitted & noisy), 0.0, jnp.nan)
    else:
        margin_outside = train.labels * jnp.sum(s_train * outside_gamma, axis=(0, 2) if heads else -1)
        share = noise_share(margin_outside, train.labels * f_train, fitted & noisy)
    return dict(
        train_accuracy=train_accuracy,
        train_loss=train_loss,
        clean_accuracy=masked_mean(fitted, clean),
        noisy_fit=masked_mean(fitted, noisy),
        attention_clean=attention_clean,
        attention_noisy=attention_noisy,
        p_norm=jnp.sqrt(jnp.mean(norms * norms)) if heads else norms,
        cos_mu1=head_mean(p[..., 0] / safe_norm, heads),
        cos_mu2=head_mean(p[..., 1] / safe_norm, heads),
        saturation_clean=saturation_sums[:, 0],
        saturation_noisy=saturation_sums[:, 1],
        gap_clean=masked_mean(head_mean(lead_relevant, heads), clean),
        gap_noisy=masked_mean(head_mean(lead_opposite, heads), noisy),
        max_attention=jnp.mean(jnp.max(s_train, axis=-1)),
        head_attention=head_attention,
        fit_by_attention=masked_mean(fitted & (top == WEAK_OPPOSITE), noisy),
        fit_by_head=masked_mean(fitted & (top == RELEVANT), noisy),
        head_noise_share=share,
    )


def noise_share(margin_outside: jax.Array, margin: jax.Array, counted: jax.Array) -> jax.Array:
    """Median over the samples ``counted`` (n,) of margin_outside / margin (each (n,)); NaN when none is."""
    return jnp.nanmedian(jnp.where(counted, margin_outside / jnp.where(counted, margin, 1.0), jnp.nan))


def attention_test_metrics(
    params: Params, test, test_gamma, query=None, normaliser: str = "softmax"
) -> dict[str, jax.Array]:
    """Test accuracy, loss and mean attention per role (over heads too) of the attention model at ``params``
    (γ = Xν given, (n_test, T) or per head (H, n_test, T); ``query`` Wᵀp where the caller has it; φ =
    ``normaliser``)."""
    query = effective_query(params) if query is None else query
    s_test = normalise(scores_along(test.tokens, query), normaliser)
    summed = (0, 2) if s_test.ndim == 3 else -1
    test_accuracy, test_loss = accuracy_and_loss(jnp.sum(s_test * test_gamma, axis=summed), test.labels)
    roles = role_attention(s_test, test.roles)
    return dict(
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        attention_test=jnp.mean(roles, axis=tuple(range(roles.ndim - 1))),
    )
