"""Correlations of vocabulary projections computed through ``d x d`` kernels.

Dar et al. (§6, application (a)) compare a vector ``x`` of model A with a vector ``y`` of model B
by the Pearson correlation, over the tokens ``t`` of a shared vocabulary, of their projections
``x · a_t`` and ``y · b_t`` (``a_t``, ``b_t``: the two bases' columns for token t). Projecting
explicitly costs ``n x d_vocab`` floats per group of vectors (GBs for a 50k vocabulary). With the
*centred* bases ``ã_t = a_t - mean_t a_t`` the correlation needs only three small matrices:

    K_a  = (1/e) Σ_t ã_t ã_tᵀ   [d_a, d_a]
    K_b  = (1/e) Σ_t b̃_t b̃_tᵀ   [d_b, d_b]
    K_ab = (1/e) Σ_t ã_t b̃_tᵀ   [d_a, d_b]
    corr(x, y) = x K_ab yᵀ / sqrt(x K_a xᵀ · y K_b yᵀ)

(the paper's ``μ``/``var`` formula, with the means removed from the bases once instead of from
every product, which avoids cancellation). The kernels are accumulated in float64 over vocabulary
chunks, so memory never grows with the vocabulary.

Whole heads: a head's circuit ``A = L Rᵀ`` (OV: ``W_V W_O``; QK: ``W_Q W_Kᵀ``) read in
embedding space is the vocab x vocab matrix ``M = B̃_lᵀ L Rᵀ B̃_r``. Two heads are compared by the
cosine of their ``M`` (the correlation of the *double-centred* matrices: every row and column mean
removed, which is what centring both bases does), again through kernels:

    <M_a, M_b> / e² = Σ (L_aᵀ K^l_ab L_b) ∘ (R_aᵀ K^r_ab R_b)     (both r_a x r_b)

The raw-feature baseline is the same computation with the identity as the "vocabulary" (the d
coordinates are the items): Pearson correlation of the raw vectors.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import InvalidArgumentError

# Vocabulary columns accumulated per step when building the kernels.
_KERNEL_CHUNK = 8192

# A vector whose projection varies less than this (relative to the largest variance in its
# group) has no defined correlation: it gets correlation 0 with everything.
_VARIANCE_FLOOR = 1e-12


@dataclass(frozen=True)
class CrossKernel:
    """Centred second moments of two bases over the same token list (see the module docstring).

    Attributes:
        K_a: ``[d_a, d_a]`` float64.
        K_b: ``[d_b, d_b]`` float64.
        K_ab: ``[d_a, d_b]`` float64.
        n_items: Tokens (or raw coordinates) the moments were taken over.
    """

    K_a: Float[Tensor, "d_a d_a"]
    K_b: Float[Tensor, "d_b d_b"]
    K_ab: Float[Tensor, "d_a d_b"]
    n_items: int


def second_moments(
    basis_a: Float[Tensor, "d_a n"],
    basis_b: Float[Tensor, "d_b n"],
    *,
    chunk_size: int = _KERNEL_CHUNK,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Uncentred ``Σ_t a aᵀ``, ``Σ_t b bᵀ``, ``Σ_t a bᵀ``, ``Σ_t a``, ``Σ_t b`` (float64, CPU).

    Accumulated over chunks of ``chunk_size`` columns, so memory is ``O(d * chunk_size)``.
    """
    if basis_b.shape[1] != basis_a.shape[1]:
        raise InvalidArgumentError(
            "the two bases must have the same tokens as columns, got "
            f"{basis_a.shape[1]} and {basis_b.shape[1]}"
        )
    d_a, d_b = basis_a.shape[0], basis_b.shape[0]
    S_a = torch.zeros(d_a, d_a, dtype=torch.float64)
    S_b = torch.zeros(d_b, d_b, dtype=torch.float64)
    S_ab = torch.zeros(d_a, d_b, dtype=torch.float64)
    s_a = torch.zeros(d_a, dtype=torch.float64)
    s_b = torch.zeros(d_b, dtype=torch.float64)
    for start in range(0, basis_a.shape[1], chunk_size):
        a = basis_a[:, start : start + chunk_size].double().cpu()
        b = basis_b[:, start : start + chunk_size].double().cpu()
        S_a += a @ a.T
        S_b += b @ b.T
        S_ab += a @ b.T
        s_a += a.sum(1)
        s_b += b.sum(1)
    return S_a, S_b, S_ab, s_a, s_b


def cross_kernel(
    basis_a: Float[Tensor, "d_a n"],
    basis_b: Float[Tensor, "d_b n"],
    *,
    chunk_size: int = _KERNEL_CHUNK,
) -> CrossKernel:
    """The centred kernels of two bases whose columns are the same tokens, in the same order.

    Args:
        basis_a: Model A's basis ``[d_a, n]`` (e.g. ``W_U``, or its shared-token columns).
        basis_b: Model B's basis ``[d_b, n]``; column t must be the same token as in ``basis_a``.
        chunk_size: Vocabulary columns per step (memory is ``O(d * chunk_size)``).
    """
    n = basis_a.shape[1]
    if n < 2:
        raise InvalidArgumentError(f"correlations need at least 2 tokens, got {n}")
    S_a, S_b, S_ab, s_a, s_b = second_moments(basis_a, basis_b, chunk_size=chunk_size)
    m_a, m_b = s_a / n, s_b / n
    return CrossKernel(
        K_a=S_a / n - torch.outer(m_a, m_a),
        K_b=S_b / n - torch.outer(m_b, m_b),
        K_ab=S_ab / n - torch.outer(m_a, m_b),
        n_items=n,
    )


def identity_kernel(d: int) -> CrossKernel:
    """The kernel of the raw-feature baseline: the d coordinates are the items (Pearson)."""
    eye = torch.eye(d, dtype=torch.float64)
    return cross_kernel(eye, eye)


def _scale(vectors: Tensor, K: Tensor) -> Tensor:
    """Rows divided by their projection's standard deviation (zero rows for no variance)."""
    x = vectors.double()
    var = ((x @ K) * x).sum(1)
    floor = _VARIANCE_FLOOR * float(var.max()) if var.numel() else 0.0
    inv = torch.where(var > floor, var.clamp_min(1e-300).rsqrt(), torch.zeros_like(var))
    return x * inv[:, None]


def prepare_a(vectors: Float[Tensor, "n_a d_a"], kernel: CrossKernel) -> Tensor:
    """Model A's vectors as ``x̂ K_ab [n_a, d_b]`` (float32), ready for :func:`correlate`."""
    return (_scale(vectors, kernel.K_a) @ kernel.K_ab).float()


def prepare_b(vectors: Float[Tensor, "n_b d_b"], kernel: CrossKernel) -> Tensor:
    """Model B's vectors scaled to unit projection variance ``ŷ [n_b, d_b]`` (float32)."""
    return _scale(vectors, kernel.K_b).float()


def correlate(
    vectors_a: Float[Tensor, "n_a d_a"],
    vectors_b: Float[Tensor, "n_b d_b"],
    kernel: CrossKernel,
) -> Float[Tensor, "n_a n_b"]:
    """Pearson correlation of every pair's vocabulary projections, ``[n_a, n_b]``, via kernels."""
    return prepare_a(vectors_a, kernel) @ prepare_b(vectors_b, kernel).T


def squared_correlation_sum(
    prepared_a: Float[Tensor, "n_a d_b"], prepared_b: Float[Tensor, "n_b d_b"]
) -> float:
    """``Σ corr²`` over all pairs without the ``[n_a, n_b]`` matrix: ``tr(PᵀP · QᵀQ)``."""
    return float(((prepared_a.T @ prepared_a) * (prepared_b.T @ prepared_b)).sum())


@dataclass(frozen=True)
class Circuits:
    """One layer's heads as factored circuits ``L_h R_hᵀ``: ``left``, ``right`` ``[h, d, r]``."""

    left: Float[Tensor, "h d r"]
    right: Float[Tensor, "h d r"]


@dataclass(frozen=True)
class PreparedCircuits:
    """One layer's heads, prepared for :func:`circuit_cosines` on side A or side B.

    Side A holds ``L_hᵀ K^l_ab`` and ``R_hᵀ K^r_ab`` stacked ``[h * r, d_b]``; side B holds
    ``L_h`` and ``R_h`` laid out ``[d_b, h * r]``, so all head pairs of two layers are two GEMMs.
    ``norms`` are the heads' Frobenius norms in embedding space (``sqrt(<M, M>) / e``).
    """

    n_heads: int
    rank: int
    left: Tensor
    right: Tensor
    norms: Tensor


def _circuit_norms(c: Circuits, K_l: Tensor, K_r: Tensor) -> Tensor:
    lx, rx = c.left.double(), c.right.double()
    gl = lx.transpose(1, 2) @ K_l @ lx
    gr = rx.transpose(1, 2) @ K_r @ rx
    return (gl * gr).sum((1, 2)).clamp_min(0).sqrt()


def prepare_circuits_a(
    c: Circuits, left_kernel: CrossKernel, right_kernel: CrossKernel
) -> PreparedCircuits:
    """Model A's heads of one layer (see :class:`PreparedCircuits`)."""
    h, _, r = c.left.shape
    left = (c.left.double().transpose(1, 2) @ left_kernel.K_ab).reshape(h * r, -1)
    right = (c.right.double().transpose(1, 2) @ right_kernel.K_ab).reshape(h * r, -1)
    norms = _circuit_norms(c, left_kernel.K_a, right_kernel.K_a)
    return PreparedCircuits(h, r, left.float(), right.float(), norms)


def prepare_circuits_b(
    c: Circuits, left_kernel: CrossKernel, right_kernel: CrossKernel
) -> PreparedCircuits:
    """Model B's heads of one layer (see :class:`PreparedCircuits`)."""
    h, d, r = c.left.shape
    left = c.left.float().permute(1, 0, 2).reshape(d, h * r)
    right = c.right.float().permute(1, 0, 2).reshape(d, h * r)
    norms = _circuit_norms(c, left_kernel.K_b, right_kernel.K_b)
    return PreparedCircuits(h, r, left, right, norms)


def circuit_cosines(a: PreparedCircuits, b: PreparedCircuits) -> Float[Tensor, "h_a h_b"]:
    """Cosine of every head pair's double-centred vocab x vocab circuits, ``[h_a, h_b]``.

    Heads with a zero circuit in embedding space get cosine 0.
    """
    prod = (a.left @ b.left) * (a.right @ b.right)
    inner = prod.reshape(a.n_heads, a.rank, b.n_heads, b.rank).sum((1, 3)).double()
    denom = torch.outer(a.norms, b.norms)
    return torch.where(denom > 0, inner / denom.clamp_min(1e-300), torch.zeros_like(inner)).float()


__all__ = [
    "Circuits",
    "CrossKernel",
    "PreparedCircuits",
    "circuit_cosines",
    "correlate",
    "cross_kernel",
    "identity_kernel",
    "prepare_a",
    "prepare_b",
    "prepare_circuits_a",
    "prepare_circuits_b",
    "second_moments",
    "squared_correlation_sum",
]
