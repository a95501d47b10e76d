"""Score normalisation: per-token affine maps of the scores, applied by changing the basis.

Definitions (``s_t(x)`` is the raw score of token t for a vector x, ``μ_t`` and ``σ_t`` the mean
and standard deviation of ``s_t`` over a reference set of directions):

* **standardised over random directions** (``reference=None``): ``s_t(x) / ‖B[:, t]‖``. For
  isotropic random directions ``x ~ N(0, I)`` the score has mean 0 and standard deviation
  ``‖B[:, t]‖``, so this is the exact z-score; it equals ``‖x‖ cos(x, B[:, t])``.
* **standardised over a reference set** R (e.g. every FF value of the layer):
  ``(s_t(x) - μ_t) / σ_t`` with ``μ_t = mean_r s_t(r)`` and ``σ_t`` the population standard
  deviation. Computed exactly from R's mean ``m`` and covariance ``Σ`` (after the basis' own
  non-linear ``pre``): ``μ_t = m·B_t + b_t``, ``σ_t² = B_tᵀ Σ B_t``.
* **centred** (``scale=False``): ``s_t(x) - μ_t``. With the logit-lens basis and a corpus's
  hidden states as R this is the **contrastive logit lens**: the logit lens minus its corpus
  mean.

Each is the basis ``B' = B diag(1/σ)`` with bias ``b' = (b - μ)/σ``, so top-k stays exact and
streamed. Token pairs: a circuit's vocab factors are ``Bᵀ A`` and ``Bᵀ C``; dividing basis
columns by ``σ`` divides the factor rows, so ``(D_l Bₗᵀ A)(D_r Bᵣᵀ C)ᵀ`` stays factored and the
pair search stays exact. A per-token offset (centring) is not a product of row scalings; pair
searches refuse such bases (``BasisError``) rather than return a different quantity.
"""

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import BasisError
from ..space import Basis, EmbeddingSpace, make_basis


def standardise(
    basis: Basis,
    reference: "Float[Tensor, 'n d_model'] | None" = None,
    *,
    scale: bool = True,
    name: str | None = None,
) -> Basis:
    """A basis whose scores are the normalised scores of ``basis`` (see the module docstring).

    Args:
        basis: The basis to normalise.
        reference: ``[n, d_model]`` reference directions (in the space the basis reads, i.e.
            after any transport), or None for isotropic random directions (linear bases only).
        scale: Divide by ``σ_t`` (standardise); False only centres (needs ``reference``).
        name: Reference name shown in the basis name (default ``"random"`` or ``"ref[n]"``).

    Raises:
        BasisError: Random directions with a non-linear basis, centring without a reference, a
            malformed reference, or a token whose scores do not vary over the reference.
    """
    matrix = basis.matrix.float()
    if reference is None:
        if not basis.linear:
            raise BasisError(
                f"standardising {basis.name!r} over random directions needs a linear basis; "
                "pass reference=... (vectors to standardise over) instead"
            )
        if not scale:
            raise BasisError("centring needs reference directions; random ones have mean 0")
        sigma = matrix.norm(dim=0)
        label = name or "random"
        bias = None
    else:
        if reference.ndim != 2 or reference.shape[1] != matrix.shape[0] or reference.shape[0] < 2:
            raise BasisError(
                f"reference must be [n >= 2, d_model={matrix.shape[0]}], got "
                f"{tuple(reference.shape)}"
            )
        prepared = basis.prepare(reference).double()
        mean = prepared.mean(0)
        centred = prepared - mean
        cov = centred.T @ centred / prepared.shape[0]
        B = matrix.double()
        sigma = ((cov @ B) * B).sum(0).clamp_min(0).sqrt().float()
        # s_t(x) - μ_t = pre(x)·B_t + b_t - (m·B_t + b_t): the basis bias cancels.
        bias = -(mean @ B).float()
        label = name or f"ref[{reference.shape[0]}]"
    if scale:
        flat = (sigma <= 0) | ~torch.isfinite(sigma)
        if bool(flat.any()):
            raise BasisError(
                f"{int(flat.sum())} token(s) have zero spread over the reference (e.g. id "
                f"{int(flat.nonzero()[0])}); drop them with a filter or use another reference"
            )
        matrix = matrix / sigma
        bias = None if bias is None else bias / sigma
    what = "standardised" if scale else "centred"
    return Basis(f"{basis.name} {what}({label})", matrix, bias=bias, pre=basis.pre)


def normalised_space(
    space: EmbeddingSpace,
    *,
    read: "Float[Tensor, 'n d_model'] | None | bool" = True,
    write: "Float[Tensor, 'n d_model'] | None | bool" = True,
    scale: bool = True,
) -> EmbeddingSpace:
    """The same space with normalised scores on the chosen sides.

    Args:
        space: The space to normalise (its transport and tokenizer are kept).
        read: ``True``: standardise the read side over random directions; a tensor: over those
            reference vectors; ``False``/None: leave it raw.
        write: The same for the write side.
        scale: See :func:`standardise`.

    Returns:
        A new :class:`EmbeddingSpace` (the basis names say which normalisation was applied, so
        every result's provenance records it).
    """

    def side(basis: Basis, option: Any) -> Basis:
        if option is False or option is None:
            return basis
        return standardise(basis, None if option is True else option, scale=scale)

    return EmbeddingSpace(
        space.view,
        read=side(space.read, read),
        write=side(space.write, write),
        transport=space.transport,
        tokenizer=space.tokenizer,
    )


def contrastive_readout(
    space: EmbeddingSpace, hidden: Float[Tensor, "n d_model"], *, name: str = "corpus"
) -> Basis:
    """The contrastive logit lens: the readout basis minus its mean over ``hidden`` states.

    ``score_t(h) = lens(h)_t - mean_p lens(h_p)_t`` with ``lens`` the final norm then ``W_U``
    and ``b_U`` (the ``readout`` basis); use it as ``te.EmbeddingSpace(view, write=...)``.

    Args:
        space: A space of the model (its view provides the final norm and unembedding).
        hidden: ``[n, d_model]`` hidden states from a corpus (e.g. final residuals).
        name: Corpus name shown in the basis name.
    """
    return standardise(make_basis(space.view, "readout"), hidden, scale=False, name=name)


__all__ = ["contrastive_readout", "normalised_space", "standardise"]
