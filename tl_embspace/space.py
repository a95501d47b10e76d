"""Embedding-space bases: how a d_model vector becomes a score for every vocabulary item.

A basis maps vectors ``x [n, d_model]`` to scores ``pre(x) @ matrix + bias`` over the vocabulary.
The *read* side interprets vectors that read from the residual stream (FF keys and gates, Q/K/V
columns); the *write* side interprets vectors that are added to it (FF values, O rows). The two
are chosen independently:

- ``W_U``: matrix ``W_U``. Output embedding: the logit a written vector adds to each token (the
  paper's ``E``).
- ``W_E``: matrix ``W_Eᵀ``. Input embedding: how strongly a read vector responds to each token's
  embedding. Where a norm follows the embedding (Bloom, ``spec.embed_norm``) the matrix is
  ``embed_ln(W_E)ᵀ``, the tokens as the residual stream receives them.
- ``pinv``: matrix ``pinv(W_U)ᵀ``. The paper's exact read side ``E'ᵀ`` (``E E' = I``):
  coordinates such that ``x = scores @ W_Uᵀ`` would rebuild ``x``; dense, not top-k friendly.
- ``pinv_W_E``: matrix ``pinv(W_Eᵀ)ᵀ``. The same with the input embedding.
- ``readout``: final norm, then ``W_U`` and ``b_U``. Logit lens: what the model itself would
  predict if ``x`` were the final residual (not linear: no pairs).

A per-layer *transport* ``f(layer, vectors, side) -> vectors`` is applied before the basis: plug
in a tuned lens translator or a Jacobian lens to carry a layer-``l`` vector to the final layer.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ._linalg import single_threaded
from .adapters import WeightView, adapt
from .errors import BasisError, InvalidArgumentError, VocabularyMismatchError
from .tokens import check_tokenizer

Transport = Callable[[int, Tensor, str], Tensor]

BASIS_NAMES = ("W_U", "W_E", "pinv", "pinv_W_E", "readout")


@dataclass(frozen=True)
class Basis:
    """Vocabulary scores of d_model vectors: ``pre(x) @ matrix + bias``.

    Attributes:
        name: What the basis is, recorded in every result.
        matrix: ``[d_model, d_vocab]``.
        bias: ``[d_vocab]`` added to the scores, or None.
        pre: A non-linear map applied to the vectors first (the final norm for ``readout``), or
            None. Bases with ``pre`` are not linear and cannot score token pairs.
    """

    name: str
    matrix: Float[Tensor, "d_model d_vocab"]
    bias: Float[Tensor, " d_vocab"] | None = None
    pre: Callable[[Tensor], Tensor] | None = None

    @property
    def linear(self) -> bool:
        """True when scores are a linear function of the vector (needed for token pairs)."""
        return self.pre is None and self.bias is None

    def prepare(self, vectors: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
        """The vectors the matrix is applied to (after ``pre``), in float32."""
        vectors = vectors.float()
        return vectors if self.pre is None else self.pre(vectors)

    def require_linear(self, what: str) -> None:
        """Raise BasisError if this basis is not linear."""
        if not self.linear:
            why = []
            if self.pre is not None:
                why.append("applies a non-linear map first (the final norm)")
            if self.bias is not None:  # b_U, or a centred / reference-standardised basis
                why.append("adds a per-token offset (a bias)")
            raise BasisError(
                f"{what} needs a linear basis, but {self.name!r} {' and '.join(why)}; use "
                "'W_U', 'W_E' or 'pinv', or standardise one over random directions "
                "(vocab.standardise(basis): a per-token scale, which keeps pair scores factored)"
            )


def _unembed(view: WeightView) -> Tensor:
    if not view.spec.unembed_trained:
        raise BasisError(
            f"W_U of {view.spec.model_name} was never trained (e.g. an encoder loaded without its "
            "MLM head), so projections through it are meaningless; use the 'W_E' basis"
        )
    return view.W_U.float()


def _pinv_t(matrix: Tensor) -> Tensor:
    """``pinv(matrix)ᵀ`` for a ``[d_model, d_vocab]`` float32 matrix, computed in float64.

    Singular values below ``max(shape) * eps(float32) * σ_max`` are treated as zero: the
    weights reach us as float32 (views compute in float32), so below that level they are
    rounding noise of that computation (e.g. the mean direction that centring removes from a
    folded ``W_U``), and inverting them would blow that noise up to dominate every score. The
    cut-off uses float32's precision whatever dtype the model stores: a float16/bfloat16
    matrix is exactly representable in float32, and with its own ``eps`` the cut-off would
    exceed ``σ_max`` at a 49k vocabulary and drop every direction (an all-zero basis).
    """
    rtol = max(matrix.shape) * torch.finfo(torch.float32).eps
    with single_threaded():
        return torch.linalg.pinv(matrix.double(), rtol=rtol).T.float().contiguous()


def _check_basis_shape(view: WeightView, matrix: Tensor, what: str) -> None:
    """A basis matrix must be ``[d_model, d_vocab]`` for one of this model's vocabularies."""
    s = view.spec
    if matrix.ndim != 2 or matrix.shape[0] != s.d_model:
        raise BasisError(
            f"{what} must be a [d_model={s.d_model}, d_vocab] matrix, "
            f"got shape {tuple(matrix.shape)}"
        )
    vocabularies = sorted({s.d_vocab, s.d_vocab_out})
    if matrix.shape[1] not in vocabularies:
        raise VocabularyMismatchError(
            f"{what} has {matrix.shape[1]} columns but {s.model_name}'s vocabulary has "
            f"{' or '.join(map(str, vocabularies))} tokens: its scores would be labelled with "
            "the wrong tokens; give one column per token id of the model"
        )


def make_basis(view: WeightView, name: "str | Basis | Tensor") -> Basis:
    """Build a named basis for ``view`` (or accept a Basis or a ``[d_model, d_vocab]`` tensor)."""
    if isinstance(name, Basis):
        _check_basis_shape(view, name.matrix, f"basis {name.name!r}")
        return name
    if isinstance(name, Tensor):
        _check_basis_shape(view, name, "a custom basis")
        return Basis("custom", name.float())
    if name == "W_U":
        return Basis("W_U", _unembed(view))
    if name == "W_E" and view.spec.embed_norm:
        # A norm follows the embedding (Bloom): tokens enter the residual as embed_ln(W_E).
        return Basis("embed_ln(W_E)^T", view.W_E_resid.float().T)
    if name == "pinv_W_E" and view.spec.embed_norm:
        E = view.W_E_resid.float().T
        return Basis("pinv(embed_ln(W_E)^T)^T", _pinv_t(E))
    if name == "W_E":
        return Basis("W_E^T", view.W_E.float().T)
    if name == "pinv":
        return Basis("pinv(W_U)^T", _pinv_t(_unembed(view)))
    if name == "pinv_W_E":
        return Basis("pinv(W_E^T)^T", _pinv_t(view.W_E.float().T))
    if name == "readout":
        W_U = _unembed(view)
        b_U = view.b_U
        bias = b_U.float() if b_U is not None and bool(b_U.abs().max() > 0) else None
        return Basis(
            "readout(final_norm, W_U, b_U)",
            W_U,
            bias=bias,
            pre=view.final_norm,
        )
    raise BasisError(
        f"unknown basis {name!r}; expected one of: {', '.join(BASIS_NAMES)}, a Basis or a tensor"
    )


class EmbeddingSpace:
    """A model's weights plus the read and write bases (and optional transport) to read them with.

    Args:
        model: A TransformerLens model or a ``WeightView`` (e.g. ``adapt(model).folded()``).
        read: Basis for vectors that read the residual stream. Default ``"W_E"`` (the input
            embedding: what the residual holds at layer 0); for tied models this equals ``W_U``.
        write: Basis for vectors written to the residual stream. Default ``"W_U"``.
        transport: Optional ``f(layer, vectors, side) -> vectors`` applied before the basis.
        tokenizer: Tokenizer for token strings; defaults to the model's (``view.tokenizer``).
    """

    def __init__(
        self,
        model: Any,
        *,
        read: "str | Basis | Tensor" = "W_E",
        write: "str | Basis | Tensor" = "W_U",
        transport: Transport | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.view = adapt(model)
        self._requested = {"read": read, "write": write}
        self._bases = {side: make_basis(self.view, spec) for side, spec in self._requested.items()}
        self._bases_version = self.view.version()
        if transport is not None and not callable(transport):
            raise BasisError(
                f"transport must be a callable f(layer, vectors, side) -> vectors, got "
                f"{type(transport).__name__}"
            )
        self.transport = transport
        # Without any tokenizer, results show token ids as "<id N>" and filters refuse to run.
        if tokenizer is not None:
            s = self.view.spec
            check_tokenizer(tokenizer, max(s.d_vocab, s.d_vocab_out), reference=self.view.tokenizer)
        self.tokenizer = tokenizer if tokenizer is not None else self.view.tokenizer

    @classmethod
    def paper(cls, model: Any, *, exact: bool = False, **kwargs: Any) -> "EmbeddingSpace":
        """The bases of Dar et al., Table 1.

        ``E = W_U`` on both sides (approximate, used for every figure of the paper) or the right
        inverse ``E'`` on the read side (``exact=True``).
        """
        return cls(model, read="pinv" if exact else "W_U", write="W_U", **kwargs)

    def basis(self, side: str) -> Basis:
        """The basis of ``side`` ("read" or "write").

        Bases built from the model's weights (by name) are rebuilt when the model's parameters
        have been edited since (see ``WeightView.source_version``).
        """
        if side not in ("read", "write"):
            raise InvalidArgumentError(f"side must be 'read' or 'write', got {side!r}")
        version = self.view.version()
        if version != self._bases_version:
            self._bases = {s: make_basis(self.view, b) for s, b in self._requested.items()}
            self._bases_version = version
        return self._bases[side]

    @property
    def read(self) -> Basis:
        """The read-side basis (vectors that read the residual stream)."""
        return self.basis("read")

    @property
    def write(self) -> Basis:
        """The write-side basis (vectors added to the residual stream)."""
        return self.basis("write")

    def carry(self, vectors: Tensor, side: str, layer: int | None) -> Tensor:
        """Apply the transport (if any) to vectors living at ``layer``.

        Raises:
            BasisError: the transport raised, returned something other than a tensor of the
                input's shape, or returned NaN/infinite values.
        """
        vectors = vectors.float()
        if self.transport is None or layer is None:
            return vectors
        name = self.describe()["transport"]
        try:
            out = self.transport(layer, vectors, side)
        except Exception as e:  # noqa: BLE001 - a user's callable: say whose error it is
            raise BasisError(
                f"the transport {name} raised {type(e).__name__} on layer {layer} ({side} "
                f"side): {e}"
            ) from e
        if not isinstance(out, Tensor) or out.shape != vectors.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise BasisError(
                f"transport {name} returned {got} for input {tuple(vectors.shape)}; "
                "it must map [n, d_model] to [n, d_model]"
            )
        out = out.float()
        if out.numel() and not bool(torch.isfinite(out).all()):
            raise BasisError(
                f"transport {name} returned NaN or infinite values on layer {layer} ({side} "
                "side); check the transport (or the vectors it was given)"
            )
        return out

    def carry_linear(self, vectors: Tensor, side: str, layer: int | None, purpose: str) -> Tensor:
        """:meth:`carry`, refusing a transport that is not linear (e.g. a tuned lens with a bias).

        Factored circuits carry each factor column separately and SVD directions have no sign,
        so both need ``T(a x) = a T(x)``. Checked on the vectors themselves: ``T(0) = 0`` and
        ``T(-x) = -T(x)`` (an affine map fails both), to float32 rounding of ``T(x)``.

        Raises:
            BasisError: the transport is affine or otherwise not odd on these vectors (and as
                :meth:`carry`).
        """
        plus = self.carry(vectors, side, layer)
        if self.transport is None or layer is None or vectors.numel() == 0:
            return plus
        minus = self.carry(-vectors, side, layer)
        zero = self.carry(torch.zeros_like(vectors[:1]).float(), side, layer)
        scale = float(plus.abs().max()) + float(vectors.abs().max())
        tol = 1e-5 * scale + torch.finfo(torch.float32).tiny
        if float((plus + minus).abs().max()) > tol or float(zero.abs().max()) > tol:
            raise BasisError(
                f"{purpose} needs a linear transport, but {self.describe()['transport']} is not "
                f"linear on layer {layer} (T(0) != 0 or T(-x) != -T(x), e.g. an affine tuned "
                "lens with a bias): the circuit's factors and SVD signs would be carried wrongly. "
                "Use the transport's linear part, or project single vectors instead"
            )
        return plus

    def vocab_factor(
        self,
        factor: Float[Tensor, "d_model rank"],
        side: str,
        layer: int | None,
        tokens: Tensor | None = None,
        *,
        purpose: str = "a factored vocab x vocab circuit",
    ) -> Float[Tensor, "d_vocab rank"]:
        """``Bᵀ carry(factor)``: one factor of a d_model x d_model circuit, in vocabulary space.

        A circuit ``A Bᵀ`` (e.g. ``W_V W_O`` or ``W_Q W_Kᵀ``) becomes the vocab x vocab matrix
        ``vocab_factor(A, ...) @ vocab_factor(B, ...)ᵀ``, which is only ever used factored.
        ``tokens`` keeps only those vocabulary rows (cheaper than computing all and indexing);
        ``purpose`` names the caller in the error raised for a non-linear basis.
        """
        basis = self.basis(side)
        basis.require_linear(purpose)
        # Transport acts on d_model vectors: the factor's columns are such vectors; carrying
        # them one by one is only the circuit's transport when the transport is linear.
        columns = self.carry_linear(factor.T, side, layer, purpose).T
        matrix = basis.matrix if tokens is None else basis.matrix[:, tokens]
        return matrix.T @ columns

    def describe(self) -> dict[str, str]:
        """Names of the bases and transport, for provenance."""
        return {
            "read_basis": self.read.name,
            "write_basis": self.write.name,
            "transport": "none"
            if self.transport is None
            else getattr(self.transport, "__name__", repr(self.transport)),
        }

    def __repr__(self) -> str:
        d = self.describe()
        return (
            f"EmbeddingSpace({self.view!r}, read={d['read_basis']}, write={d['write_basis']}, "
            f"transport={d['transport']})"
        )
