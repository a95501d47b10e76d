"""Translation (apps.translate): exact inverses recovered, baselines fitted, heads carried.

The invertible toy: model B is model A in other coordinates, ``h_B = h_A Q`` and
``E_B = Q⁻¹ E_A`` (so both give the same vocabulary scores). The vocabulary map B -> A must be
``Q⁻¹`` and a classifier trained on A, carried to B through it, must give A's predictions.
"""

import functools

import pytest
import torch

from tl_embspace import adapt
from tl_embspace.apps import (
    LinearMap,
    identity_map,
    least_squares_map,
    procrustes_map,
    vocabulary_map,
    vocabulary_map_from_bases,
)
from tl_embspace.errors import BasisError, InvalidArgumentError, VocabularyMismatchError

from . import tinymodels as tm
from .test_apps_align import other_model_space


@functools.cache
def toy():
    gen = torch.Generator().manual_seed(0)
    d, e, n = 8, 30, 200
    E_A = torch.randn(d, e, generator=gen, dtype=torch.float64)
    Q = torch.randn(d, d, generator=gen, dtype=torch.float64) + 2 * torch.eye(
        d, dtype=torch.float64
    )
    E_B = torch.linalg.solve(Q, E_A)  # Q⁻¹ E_A
    H_A = torch.randn(n, d, generator=gen, dtype=torch.float64)
    H_B = H_A @ Q
    W = torch.randn(d, 3, generator=gen, dtype=torch.float64)  # a 3-class head on A
    b = torch.randn(3, generator=gen, dtype=torch.float64)
    return E_A, E_B, Q, H_A, H_B, W, b


def test_vocabulary_map_is_the_exact_inverse_on_an_invertible_toy():
    E_A, E_B, Q, H_A, H_B, W, b = toy()
    assert torch.allclose(H_B @ E_B, H_A @ E_A)  # the toy really is one model in two coordinates
    b_to_a = LinearMap(vocabulary_map_from_bases(E_B, E_A).double())
    torch.testing.assert_close(b_to_a.matrix, torch.linalg.inv(Q), atol=1e-4, rtol=1e-4)
    head_w, head_b = b_to_a.carry_head(W, b)
    assert head_b is not None
    logits_a = H_A @ W + b
    logits_b = H_B @ head_w + head_b
    torch.testing.assert_close(logits_b, logits_a, atol=1e-3, rtol=1e-4)
    assert torch.equal(logits_b.argmax(1), logits_a.argmax(1))  # the same predictions
    a_to_b = vocabulary_map_from_bases(E_A, E_B).double()
    torch.testing.assert_close(H_A @ a_to_b, H_B, atol=1e-3, rtol=1e-4)


def test_vocabulary_map_matches_the_dense_pseudo_inverse():
    E_A, E_B, *_ = toy()
    E_C = E_B[:5]  # a narrower, non-invertible target: least squares, not an inverse
    dense = E_A @ torch.linalg.pinv(E_C)
    torch.testing.assert_close(
        vocabulary_map_from_bases(E_A, E_C).double(), dense, atol=1e-4, rtol=1e-4
    )


def test_fitted_baselines_recover_known_maps():
    E_A, E_B, Q, H_A, H_B, W, b = toy()
    ls = least_squares_map(H_A, H_B + 0.5)
    torch.testing.assert_close(ls.matrix.double(), Q, atol=1e-3, rtol=1e-3)
    assert ls.bias is not None
    torch.testing.assert_close(
        ls.bias.double(), torch.full((8,), 0.5, dtype=torch.float64), atol=1e-3, rtol=0
    )
    assert ls.provenance["n_pairs"] == 200
    R, _ = torch.linalg.qr(Q)  # an orthogonal map
    pr = procrustes_map(H_A, H_A @ R)
    torch.testing.assert_close(pr.matrix.double(), R, atol=1e-4, rtol=1e-4)
    ridge = least_squares_map(H_A, H_B, ridge=1e3, bias=False)
    assert ridge.bias is None
    assert ridge.matrix.norm() < ls.matrix.norm()  # the penalty shrinks the map
    eye = identity_map(8, 8)
    assert torch.equal(eye(H_A.float()), H_A.float())
    with pytest.raises(InvalidArgumentError, match="equal widths"):
        identity_map(8, 9)
    with pytest.raises(InvalidArgumentError, match="same n"):
        least_squares_map(H_A, H_B[:10])


def test_carry_head_with_a_map_bias_is_exact():
    gen = torch.Generator().manual_seed(1)
    m = LinearMap(torch.randn(4, 6, generator=gen), torch.randn(6, generator=gen))
    W, b = torch.randn(6, 2, generator=gen), torch.randn(2, generator=gen)
    h = torch.randn(10, 4, generator=gen)
    w2, b2 = m.carry_head(W, b)
    assert b2 is not None
    torch.testing.assert_close(h @ w2 + b2, m(h) @ W + b)
    with pytest.raises(InvalidArgumentError, match="reads width"):
        m.carry_head(torch.randn(4, 2))
    with pytest.raises(InvalidArgumentError, match="width"):
        m(torch.randn(3, 6))


@functools.cache
def tiny_view():
    return adapt(tm.bridge("llama-gqa-untied"))  # raw W_U [32, 96]: full row rank


def test_vocabulary_map_of_a_model_onto_itself_is_the_identity():
    view = tiny_view()
    m = vocabulary_map(view, view)
    torch.testing.assert_close(m.matrix, torch.eye(32), atol=1e-4, rtol=0)
    assert m.provenance["basis_source"] == "W_U" and m.provenance["n_tokens"] == tm.D_VOCAB
    m_e = vocabulary_map(view, view, basis="W_E")
    assert m_e.provenance["basis_target"] == "W_E^T"
    torch.testing.assert_close(m_e.matrix, torch.eye(32), atol=1e-4, rtol=0)


def test_vocabulary_map_between_two_models_equals_the_dense_formula():
    a, b = tiny_view(), adapt(tm.bridge("llama-mha-untied"))
    m = vocabulary_map(a, b)
    dense = a.W_U.double() @ torch.linalg.pinv(b.W_U.double())
    torch.testing.assert_close(m.matrix.double(), dense, atol=1e-4, rtol=1e-3)


def test_vocabularies_are_checked():
    view = tiny_view()
    other = other_model_space(view, 50)
    with pytest.raises(VocabularyMismatchError, match="shared_tokens=True"):
        vocabulary_map(view, other)
    m = vocabulary_map(view, other, shared_tokens=True)
    assert m.provenance["n_tokens"] == 50
    W = view.W_U.double()[:, :50]
    torch.testing.assert_close(m.matrix.double(), W @ torch.linalg.pinv(W), atol=1e-4, rtol=1e-3)
    with pytest.raises(BasisError, match="linear"):
        vocabulary_map(view, view, basis="readout")
