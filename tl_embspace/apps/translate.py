"""Carry hidden states, and the heads that read them, from one model's space to another's.

Dar et al. §6, application (b) ("zero-shot stitching"): a hidden state of model A is mapped into
model B's feature space through the shared vocabulary,

    h_B = h_A · E_A · pinv(E_B)

(row vectors; ``E`` ``[d_model, d_vocab]`` is the basis chosen explicitly, ``W_U`` by default):
``h_A E_A`` are A's scores over the vocabulary, and ``pinv(E_B)`` finds the B state whose scores
match them best in least squares. The ``[d_A, d_B]`` matrix is computed as
``(E_A E_Bᵀ) pinv(E_B E_Bᵀ)`` (the identity ``pinv(E) = Eᵀ pinv(E Eᵀ)``) from ``d x d`` second
moments streamed over the vocabulary: no vocabulary-sized matrix is ever formed.

The baselines it is judged against use activations (a small unlabelled sample of paired hidden
states of the two models on the same inputs): :func:`least_squares_map` and
:func:`procrustes_map`, and :func:`identity_map` where the widths agree.

A classifier head ``W [d_B, n_classes]`` (with bias) that reads B's space becomes a head for A's
space with :meth:`LinearMap.carry_head` of the A -> B map: ``logits(h_A) = head(map(h_A))``.
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from .._linalg import single_threaded
from ..errors import InvalidArgumentError
from ..interpreters import as_space
from ..space import make_basis
from .align import token_columns
from .kernels import second_moments


@dataclass(frozen=True)
class LinearMap:
    """An affine map between two feature spaces: ``h_to = h_from @ matrix + bias``.

    Attributes:
        matrix: ``[d_from, d_to]``.
        bias: ``[d_to]`` or None.
        method: How it was made (``"vocabulary"``, ``"least_squares"``, ``"procrustes"``,
            ``"identity"``).
        provenance: Bases, token counts, sample sizes: what the map depends on.
    """

    matrix: Float[Tensor, "d_from d_to"]
    bias: Float[Tensor, " d_to"] | None = None
    method: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def __call__(self, hidden: Float[Tensor, "... d_from"]) -> Float[Tensor, "... d_to"]:
        """Map hidden states (any leading shape) into the target space."""
        if hidden.shape[-1] != self.matrix.shape[0]:
            raise InvalidArgumentError(
                f"hidden states of width {hidden.shape[-1]} given to a map from width "
                f"{self.matrix.shape[0]}"
            )
        out = hidden.to(self.matrix.dtype) @ self.matrix
        return out if self.bias is None else out + self.bias

    def carry_head(
        self, weight: Float[Tensor, "d_to n_out"], bias: Float[Tensor, " n_out"] | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """A head that reads the *target* space, rewritten to read the *source* space.

        ``h_from @ W' + b' == (h_from @ matrix + map_bias) @ weight + bias`` exactly.

        Returns:
            ``(W' [d_from, n_out], b' [n_out] or None)``.
        """
        if weight.shape[0] != self.matrix.shape[1]:
            raise InvalidArgumentError(
                f"the head reads width {weight.shape[0]}, but this map goes to width "
                f"{self.matrix.shape[1]}"
            )
        w = weight.to(self.matrix.dtype)
        new_bias = None if bias is None else bias.to(self.matrix.dtype)
        if self.bias is not None:
            shift = self.bias @ w
            new_bias = shift if new_bias is None else new_bias + shift
        return self.matrix @ w, new_bias


def vocabulary_map_from_bases(
    basis_from: Float[Tensor, "d_from n"],
    basis_to: Float[Tensor, "d_to n"],
    *,
    rtol: float | None = None,
) -> Float[Tensor, "d_from d_to"]:
    """``E_from · pinv(E_to)`` for two bases whose columns are the same tokens (float32).

    Args:
        basis_from: ``[d_from, n]``.
        basis_to: ``[d_to, n]``.
        rtol: Relative cut-off of ``pinv(E_to E_toᵀ)``'s eigenvalues (default:
            ``d_to * eps(float32)``, squared-conditioning aware). A centred ``W_U`` has one zero
            direction; the cut-off keeps rounding noise there from being inverted.
    """
    S_from, S_to, S_cross, _, _ = second_moments(basis_from, basis_to)
    del S_from
    cut = rtol if rtol is not None else basis_to.shape[0] * torch.finfo(torch.float32).eps
    with single_threaded():
        inverse = torch.linalg.pinv(S_to, rtol=cut, hermitian=True)
    return (S_cross @ inverse).float()


def vocabulary_map(
    source: Any,
    target: Any,
    *,
    basis: str = "W_U",
    shared_tokens: bool = False,
) -> LinearMap:
    """The map ``h_target = h_source · E_source · pinv(E_target)`` through the vocabulary.

    Args:
        source: The model hidden states come from (a TransformerLens model, a ``WeightView`` or
            an ``EmbeddingSpace``, whose tokenizer is used for ``shared_tokens``).
        target: The model they are carried into.
        basis: Which basis is ``E`` in both models: ``"W_U"`` (the paper's; output embedding),
            ``"W_E"`` (input embedding, ``W_Eᵀ``), or another linear basis name of
            :class:`EmbeddingSpace`. It is recorded in the map's provenance.
        shared_tokens: Allow different vocabularies, using only the tokens whose decoded text
            both share (``provenance["n_tokens"]`` says how many). Beyond the paper.

    Raises:
        VocabularyMismatchError: Different vocabularies without ``shared_tokens=True``.
        BasisError: A non-linear basis (``readout``) or an untrained unembedding.
    """
    s, t = as_space(source), as_space(target)
    bs, bt = make_basis(s.view, basis), make_basis(t.view, basis)
    for b in (bs, bt):
        b.require_linear("a vocabulary map")
    ids_s, ids_t, n_tokens = token_columns(s, t, shared_tokens, "vocabulary_map")
    ms = bs.matrix if ids_s is None else bs.matrix[:, ids_s]
    mt = bt.matrix if ids_t is None else bt.matrix[:, ids_t]
    return LinearMap(
        matrix=vocabulary_map_from_bases(ms, mt),
        method="vocabulary",
        provenance={
            "source": s.view.spec.model_name,
            "target": t.view.spec.model_name,
            "basis_source": bs.name,
            "basis_target": bt.name,
            "n_tokens": n_tokens,
            "tokens": "shared by decoded text" if shared_tokens else "whole vocabulary",
            "formula": "E_source pinv(E_target) = (E_s E_tᵀ) pinv(E_t E_tᵀ)",
        },
    )


def _paired(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if source.ndim != 2 or target.ndim != 2 or source.shape[0] != target.shape[0]:
        raise InvalidArgumentError(
            "paired hidden states must be [n, d_source] and [n, d_target] with the same n (the "
            f"same inputs through both models), got {tuple(source.shape)} and "
            f"{tuple(target.shape)}"
        )
    return source.double(), target.double()


def least_squares_map(
    source: Float[Tensor, "n_source d_from"],
    target: Float[Tensor, "n_target d_to"],
    *,
    ridge: float = 0.0,
    bias: bool = True,
) -> LinearMap:
    """The affine map fitted on paired hidden states: ``min ‖source W + b - target‖² + ridge‖W‖²``.

    A baseline that uses activations. With ``bias`` the means are fitted exactly (the bias is
    not penalised).
    """
    x, y = _paired(source, target)
    mx = x.mean(0) if bias else torch.zeros(x.shape[1], dtype=x.dtype)
    my = y.mean(0) if bias else torch.zeros(y.shape[1], dtype=y.dtype)
    xc, yc = x - mx, y - my
    with single_threaded():
        if ridge:
            gram = xc.T @ xc + ridge * torch.eye(x.shape[1], dtype=x.dtype)
            W = torch.linalg.solve(gram, xc.T @ yc)
        else:
            W = torch.linalg.lstsq(xc, yc).solution
    b = (my - mx @ W).float() if bias else None
    return LinearMap(
        W.float(),
        b,
        method="least_squares",
        provenance={"n_pairs": int(x.shape[0]), "ridge": ridge, "bias": bias},
    )


def procrustes_map(
    source: Float[Tensor, "n_source d_from"], target: Float[Tensor, "n_target d_to"]
) -> LinearMap:
    """The orthogonal map fitted on paired hidden states: ``min ‖source Q - target‖``, ``QᵀQ = I``.

    ``Q = U Vᵀ`` from the SVD ``sourceᵀ target = U S Vᵀ`` (semi-orthogonal when the widths
    differ). A baseline that uses activations; no bias.
    """
    x, y = _paired(source, target)
    with single_threaded():
        U, _, Vh = torch.linalg.svd(x.T @ y, full_matrices=False)
    return LinearMap(
        (U @ Vh).float(), None, method="procrustes", provenance={"n_pairs": int(x.shape[0])}
    )


def identity_map(d_from: int, d_to: int) -> LinearMap:
    """The identity, where the two widths agree (a baseline; refused otherwise)."""
    if d_from != d_to:
        raise InvalidArgumentError(
            f"the identity map needs equal widths, got {d_from} and {d_to}; use a fitted map"
        )
    return LinearMap(torch.eye(d_from), None, method="identity")


__all__ = [
    "LinearMap",
    "identity_map",
    "least_squares_map",
    "procrustes_map",
    "vocabulary_map",
    "vocabulary_map_from_bases",
]
