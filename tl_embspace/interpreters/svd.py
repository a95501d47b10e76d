"""Singular directions of OV, QK, W_in and W_out (Millidge & Black 2022), read in embedding space.

A singular pair ``(u, v)`` is defined only up to a joint sign flip, so we fix a *canonical* sign:
the side of the vocabulary projection with the most extreme score is shown as ``top``
(``extras["sign"]`` records whether the raw SVD vector was flipped). Both signs are always shown
(``top`` and ``bottom``). Singular values closer than ``degenerate_rtol`` (relative) to a
neighbour are flagged ``near_degenerate``: their directions can rotate into each other under tiny
perturbations, so individual vectors are not meaningful there.
"""

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from .._linalg import single_threaded
from ..errors import InvalidArgumentError, MissingWeightError
from ..results import VectorProjection
from ..space import EmbeddingSpace
from ..tokens import TokenFilter
from ._base import (
    Selection,
    Source,
    as_space,
    check_layer,
    project_vectors,
    require_finite,
    select,
    select_one,
)
from .spec import register_interpreter


def low_rank_svd(A: Tensor, B: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """SVD of ``A @ Bᵀ`` from its factors ``A, B [d, r]`` without forming the d x d matrix.

    Returns ``U [d, r]``, ``S [r]`` (descending), ``V [d, r]`` with ``A Bᵀ = U diag(S) Vᵀ``.
    Computed in float64: QR of each factor, then the SVD of the small r x r core.
    """
    with single_threaded():
        Qa, Ra = torch.linalg.qr(A.double())
        Qb, Rb = torch.linalg.qr(B.double())
        X, S, Yh = torch.linalg.svd(Ra @ Rb.T)
    return (Qa @ X).float(), S.float(), (Qb @ Yh.T).float()


def near_degenerate(S: Tensor, rtol: float) -> list[bool]:
    """True where a singular value is within ``rtol`` (relative) of a neighbour."""
    flags = []
    for i in range(len(S)):
        gaps = [abs(S[i] - S[j]) for j in (i - 1, i + 1) if 0 <= j < len(S)]
        flags.append(bool(S[i] > 0 and min(gaps) <= rtol * S[i]) if gaps else False)
    return flags


def canonical_sign(p: VectorProjection) -> VectorProjection:
    """Flip rows whose most extreme score is negative, so ``top`` is the dominant side."""
    flip = -p.bottom_scores[:, 0] > p.top_scores[:, 0]
    f = flip[:, None]
    return replace(
        p,
        top_ids=torch.where(f, p.bottom_ids, p.top_ids),
        top_scores=torch.where(f, -p.bottom_scores, p.top_scores),
        bottom_ids=torch.where(f, p.top_ids, p.bottom_ids),
        bottom_scores=torch.where(f, -p.top_scores, p.bottom_scores),
        extras={**p.extras, "sign": [-1 if x else 1 for x in flip.tolist()]},
    )


def _directions(
    space: EmbeddingSpace,
    vectors: Tensor,
    S: Tensor,
    *,
    side: str,
    name: str,
    labels: list[str],
    layer: int,
    components: Selection,
    k: int,
    token_filter: TokenFilter | None,
    degenerate_rtol: float,
    note: str,
) -> VectorProjection:
    idx = select(components, len(S), "components")
    flags = near_degenerate(S, degenerate_rtol)
    # The canonical sign assumes scores odd in the vector: an affine transport breaks that.
    space.carry_linear(vectors[idx], side, layer, f"{name} (singular directions have no sign)")
    p = project_vectors(
        space,
        vectors[idx],
        side=side,
        interpreter=name,
        labels=[labels[i] for i in idx],
        layer=layer,
        k=k,
        token_filter=token_filter,
        note=note,
        extras={
            "singular_value": [float(S[i]) for i in idx],
            "near_degenerate": [flags[i] for i in idx],
        },
    )
    # The sign is canonicalised from the projection itself; a scoring function that is odd in
    # the vector (every linear basis) makes this independent of the SVD's arbitrary sign.
    return canonical_sign(p) if space.basis(side).linear else p


def _head_svd(
    source: Source,
    basis: dict[str, Any],
    layer: int,
    head: int,
    which: str,
    components: Selection,
    k: int,
    token_filter: TokenFilter | None,
    degenerate_rtol: float,
    *,
    circuit: str,
) -> VectorProjection:
    space = as_space(source, **basis)
    layer = check_layer(space, layer)
    lw, spec = space.view.layer(layer), space.view.spec
    h = select_one(head, spec.n_heads, "head")
    if circuit == "ov":
        A, B = lw.W_V[h], lw.W_O_written[h].T
    else:
        A, B = lw.W_Q_qk[h], lw.W_K_qk[h]
    require_finite(f"W_{circuit.upper()} of layer {layer} head {h}", A, B)
    U, S, V = low_rank_svd(A, B)
    if circuit == "ov":
        sides = {"output": ("write", V), "input": ("read", U)}
    else:
        sides = {"query": ("read", U), "key": ("read", V)}
    if which not in sides:
        raise InvalidArgumentError(
            f"which must be one of {sorted(sides)} for {circuit.upper()}, got {which!r}"
        )
    side, dirs = sides[which]
    labels = [f"L{layer}.H{h}.{circuit}.{which}[{c}]" for c in range(len(S))]
    return _directions(
        space,
        dirs.T,
        S,
        side=side,
        name=f"svd_{circuit}",
        labels=labels,
        layer=layer,
        components=components,
        k=k,
        token_filter=token_filter,
        degenerate_rtol=degenerate_rtol,
        note=f"{which} singular vectors of W_{circuit.upper()} (canonical sign; both signs shown)",
    )


@register_interpreter(
    "svd_ov",
    produces="vectors",
    indexed_by="head",
    side="per_call",
    scope="head",
    requires=("W_O",),
)
def svd_ov(
    source: Source,
    *,
    layer: int,
    head: int,
    which: str = "output",
    components: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    degenerate_rtol: float = 1e-2,
    **basis: Any,
) -> VectorProjection:
    """Singular directions of ``W_OV = W_V W_O``: ``which="output"`` (write side) or ``"input"``.

    Args:
        source: A TransformerLens model, a ``WeightView`` or an ``EmbeddingSpace``.
        layer: The layer.
        head: One query head.
        which: ``"output"`` (right singular vectors, write side) or ``"input"`` (left, read).
        components: Singular components (largest first); None for all ``d_head``.
        k: How many top and bottom tokens to keep per direction.
        token_filter: Restricts the tokens ranked.
        degenerate_rtol: Relative gap under which singular values are flagged
            ``near_degenerate`` (``extras``).
        **basis: Basis options when ``source`` is not a space (see :func:`as_space`).

    Returns:
        One row per component, with ``extras`` ``singular_value``, ``near_degenerate`` and
        ``sign``.
    """
    return _head_svd(
        source,
        basis,
        layer,
        head,
        which,
        components,
        k,
        token_filter,
        degenerate_rtol,
        circuit="ov",
    )


@register_interpreter(
    "svd_qk", produces="vectors", indexed_by="head", side="read", scope="head", requires=("W_Q",)
)
def svd_qk(
    source: Source,
    *,
    layer: int,
    head: int,
    which: str = "query",
    components: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    degenerate_rtol: float = 1e-2,
    **basis: Any,
) -> VectorProjection:
    """Singular directions of ``W_QK = W_Q W_Kᵀ``: ``which="query"`` or ``"key"`` (both read).

    Args and result as :func:`svd_ov`.
    """
    return _head_svd(
        source,
        basis,
        layer,
        head,
        which,
        components,
        k,
        token_filter,
        degenerate_rtol,
        circuit="qk",
    )


def _mlp_svd(
    source: Source,
    basis: dict[str, Any],
    layer: int,
    weight: str,
    components: Selection,
    k: int,
    token_filter: TokenFilter | None,
    degenerate_rtol: float,
) -> VectorProjection:
    space = as_space(source, **basis)
    layer = check_layer(space, layer)
    # What the residual receives: W_out times a post-MLP norm gain (Gemma-2/3), if any.
    w = getattr(space.view.layer(layer), "W_out_written" if weight == "W_out" else weight)
    if w is None:
        raise MissingWeightError(f"layer {layer} of {space.view.spec.model_name} has no {weight}")
    require_finite(f"{weight} of layer {layer}", w)
    # W_in [d_model, d_mlp]: left singular vectors live in d_model (read side).
    # W_out [d_mlp, d_model]: right singular vectors live in d_model (write side).
    with single_threaded():
        U, S, Vh = torch.linalg.svd(w.double(), full_matrices=False)
    dirs, side = (U.T, "read") if weight == "W_in" else (Vh, "write")
    labels = [f"L{layer}.{weight}.svd[{c}]" for c in range(len(S))]
    return _directions(
        space,
        dirs.float(),
        S.float(),
        side=side,
        name=f"svd_{weight[2:]}",
        labels=labels,
        layer=layer,
        components=components,
        k=k,
        token_filter=token_filter,
        degenerate_rtol=degenerate_rtol,
        note=f"d_model singular vectors of {weight} (canonical sign; both signs shown)",
    )


@register_interpreter(
    "svd_in",
    produces="vectors",
    indexed_by="component",
    side="read",
    scope="layer",
    requires=("W_in",),
)
def svd_in(
    source: Source,
    *,
    layer: int,
    components: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    degenerate_rtol: float = 1e-2,
    **basis: Any,
) -> VectorProjection:
    """Left singular vectors of ``W_in`` (the directions the MLP reads most), read side.

    Args and result as :func:`svd_ov`, without ``head`` and ``which``.
    """
    return _mlp_svd(source, basis, layer, "W_in", components, k, token_filter, degenerate_rtol)


@register_interpreter(
    "svd_out",
    produces="vectors",
    indexed_by="component",
    side="write",
    scope="layer",
    requires=("W_out",),
)
def svd_out(
    source: Source,
    *,
    layer: int,
    components: Selection = None,
    k: int = 20,
    token_filter: TokenFilter | None = None,
    degenerate_rtol: float = 1e-2,
    **basis: Any,
) -> VectorProjection:
    """Right singular vectors of ``W_out`` (the directions the MLP writes most), write side.

    Args and result as :func:`svd_ov`, without ``head`` and ``which``.
    """
    return _mlp_svd(source, basis, layer, "W_out", components, k, token_filter, degenerate_rtol)


__all__ = ["svd_ov", "svd_qk", "svd_in", "svd_out", "low_rank_svd", "near_degenerate"]
