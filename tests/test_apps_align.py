"""Alignment (apps.align): kernels against explicit projections, permuted copies recovered.

The known answer: a copy of a model whose layers, heads and neurons were permuted
(``PermutedView``) must be aligned back to the original exactly, in embedding space and in raw
space, also with a little noise added. Kernel correlations are checked against the correlations
of explicitly projected vectors on the tiny vocabularies (96 tokens), where that is cheap.
"""

import copy
import functools

import numpy as np
import pytest
import torch

from tl_embspace import EmbeddingSpace, adapt
from tl_embspace.adapters import NoisyView, PermutedView, WeightView
from tl_embspace.apps import align, correlate, cross_kernel
from tl_embspace.apps.align import CIRCUIT_GROUPS, VECTOR_GROUPS
from tl_embspace.apps.kernels import circuit_cosines, prepare_circuits_a, prepare_circuits_b
from tl_embspace.errors import (
    BasisError,
    InvalidArgumentError,
    UnsupportedModelError,
    VocabularyMismatchError,
)

from . import tinymodels as tm

N_LAYERS = 6


@functools.cache
def deep_view() -> WeightView:
    """A 6-layer tiny Llama (GQA: 4 query heads, 2 kv heads; gated MLP of 48), norms folded."""
    return adapt(tm.arch_bridge("LlamaForCausalLM", num_hidden_layers=N_LAYERS)).folded()


def permuted(view: WeightView, seed: int) -> PermutedView:
    return PermutedView.shuffled(view, seed)


def _expected(perm: PermutedView):
    layers, heads, neurons = perm.expected_matches()
    return dict(expected_layers=layers, expected_heads=heads, expected_neurons=neurons)


def _dense_corr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of every row of x with every row of y (over their columns)."""
    x = x.double() - x.double().mean(1, keepdim=True)
    y = y.double() - y.double().mean(1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True)
    y = y / y.norm(dim=1, keepdim=True)
    return x @ y.T


# -- kernels against explicit projections ------------------------------------------------------


@pytest.mark.parametrize("group", sorted(VECTOR_GROUPS))
def test_kernel_correlations_equal_those_of_projected_vectors(group):
    va = deep_view()
    vb = adapt(tm.bridge("llama-gqa-untied")).folded()  # another model, the same vocabulary
    sa, sb = EmbeddingSpace(va), EmbeddingSpace(vb)
    side, get = VECTOR_GROUPS[group]
    x, y = get(va.layer(2), va), get(vb.layer(1), vb)
    Ba, Bb = sa.basis(side).matrix, sb.basis(side).matrix
    dense = _dense_corr(x.float() @ Ba, y.float() @ Bb)  # [n, 96] projections: tiny vocabulary
    got = correlate(x, y, cross_kernel(Ba, Bb))
    torch.testing.assert_close(got.double(), dense, atol=2e-5, rtol=0)
    assert dense.abs().max() < 1 and dense.std() > 0.05  # a real spread of correlations


@pytest.mark.parametrize("group", sorted(CIRCUIT_GROUPS))
def test_circuit_cosines_equal_those_of_explicit_vocab_matrices(group):
    va = deep_view()
    vb = adapt(tm.bridge("llama-gqa-untied")).folded()
    sa, sb = EmbeddingSpace(va), EmbeddingSpace(vb)
    left, right, get = CIRCUIT_GROUPS[group]
    ka = cross_kernel(sa.basis(left).matrix, sb.basis(left).matrix)
    kr = cross_kernel(sa.basis(right).matrix, sb.basis(right).matrix)
    ca, cb = get(va.layer(3), va), get(vb.layer(0), vb)
    got = circuit_cosines(prepare_circuits_a(ca, ka, kr), prepare_circuits_b(cb, ka, kr))

    def vocab_matrices(c, space):
        Bl = space.basis(left).matrix.double()
        Br = space.basis(right).matrix.double()
        Bl = Bl - Bl.mean(1, keepdim=True)  # centring the bases = double-centring the matrices
        Br = Br - Br.mean(1, keepdim=True)
        M = torch.einsum("dt,hdr,her,eu->htu", Bl, c.left.double(), c.right.double(), Br)
        return M.reshape(M.shape[0], -1)

    Ma, Mb = vocab_matrices(ca, sa), vocab_matrices(cb, sb)
    dense = (Ma / Ma.norm(dim=1, keepdim=True)) @ (Mb / Mb.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(got.double(), dense, atol=2e-5, rtol=0)


def test_double_centred_matrix_is_what_centred_bases_give():
    # The docstring's claim: centring both bases removes every row and column mean of M.
    torch.manual_seed(0)
    Bl, Br, A = torch.randn(4, 9).double(), torch.randn(4, 7).double(), torch.randn(4, 4).double()
    M = Bl.T @ A @ Br
    double_centred = M - M.mean(0) - M.mean(1, keepdim=True) + M.mean()
    centred = (Bl - Bl.mean(1, keepdim=True)).T @ A @ (Br - Br.mean(1, keepdim=True))
    torch.testing.assert_close(centred, double_centred)


def test_raw_kernel_is_pearson_over_coordinates():
    from tl_embspace.apps.kernels import identity_kernel

    x, y = torch.randn(5, 32), torch.randn(6, 32)
    torch.testing.assert_close(correlate(x, y, identity_kernel(32)).double(), _dense_corr(x, y))


# -- permuted copies: the known answer ---------------------------------------------------------


@pytest.mark.parametrize("space", ["embedding", "raw"])
def test_permuted_copy_is_recovered_exactly(space):
    base = deep_view()
    perm = permuted(base, seed=1)
    assert perm.layer_order != list(range(N_LAYERS))  # the test really permutes
    result = align(base, perm, space=space)
    score = result.score(**_expected(perm))
    assert score["layers"]["combined"] == {"fraction_matched": 1.0, "mean_rank": 1.0}
    assert score["heads"] == 1.0
    assert score["neurons"] == 1.0
    assert set(result.groups) == set(VECTOR_GROUPS) | set(CIRCUIT_GROUPS)
    for group in result.groups:  # every group on its own finds the layers too
        assert score["layers"][group]["fraction_matched"] == 1.0, group


@pytest.mark.parametrize("aggregate", ["max_abs", "rms"])
def test_other_aggregates_recover_the_layers(aggregate):
    base = deep_view()
    perm = permuted(base, seed=2)
    result = align(base, perm, aggregate=aggregate, match_heads=False, match_neurons=False)
    assert result.score(**_expected(perm))["layers"]["combined"]["fraction_matched"] == 1.0
    assert result.head_match == {} and result.neuron_match == {}


def test_rms_aggregate_equals_root_mean_square_of_the_correlations():
    base = deep_view()
    perm = permuted(base, seed=3)
    fast = align(base, perm, aggregate="rms", groups=["ff_key"], match_heads=False)
    sa, sb = EmbeddingSpace(base), EmbeddingSpace(perm)
    kernel = cross_kernel(sa.read.matrix, sb.read.matrix)
    x, y = base.layer(1).W_in.T, perm.layer(4).W_in.T  # type: ignore[union-attr]
    want = correlate(x, y, kernel).pow(2).mean().sqrt()
    assert fast.similarity["ff_key"][1, 4] == pytest.approx(float(want), rel=1e-4)


def test_small_noise_is_still_recovered():
    base = deep_view()
    perm = permuted(base, seed=4)
    noisy = NoisyView(perm, sigma=0.05)
    score = align(base, noisy).score(**_expected(perm))
    assert score["layers"]["combined"]["fraction_matched"] == 1.0
    assert score["heads"] == 1.0 and score["neurons"] == 1.0


def test_unrelated_models_are_not_matched_perfectly():
    # A test that could not fail would prove nothing: two different random 6-layer models.
    a = deep_view()
    b = adapt(tm.arch_bridge("MistralForCausalLM", num_hidden_layers=N_LAYERS))
    result = align(a, b.folded())
    sim = result.similarity["combined"]
    assert sim.max() - sim.min() < 0.2 * sim.max()  # no layer pair stands out


def test_alignment_outputs():
    base = deep_view()
    perm = permuted(base, seed=5)
    result = align(base, perm, groups=["ff_value", "ov"])
    data = result.to_dict()
    assert data["groups"] == ["ff_value", "ov"]
    assert np.array(data["similarity"]["combined"]).shape == (N_LAYERS, N_LAYERS)
    assert data["provenance"]["n_tokens"] == tm.D_VOCAB
    assert data["provenance"]["write_basis_a"] == "W_U"
    assert result.to_json().startswith("{")
    svg = result.heatmap_svg()
    assert svg.startswith("<svg") and svg.count("<rect") == N_LAYERS**2
    assert svg.count('stroke="red"') == N_LAYERS  # one matched cell per row
    with pytest.raises(InvalidArgumentError, match="no similarity for group"):
        result.heatmap_svg("ff_key")


# -- vocabularies ------------------------------------------------------------------------------


def _other_tokenizer(n_same: int):
    """A word-level tokenizer whose first ``n_same`` words are the tiny models' words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = list(tm.tokenizer().convert_ids_to_tokens(list(range(n_same))))
    words += [f"other{i}" for i in range(tm.D_VOCAB - n_same)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")


def other_model_space(view: WeightView, n_same: int) -> EmbeddingSpace:
    """The space of a model like ``view`` whose own tokenizer is ``_other_tokenizer(n_same)``.

    (Passing another tokenizer to a model's own space is refused: it would mislabel ids.)
    """
    other = copy.copy(view)
    other.tokenizer = _other_tokenizer(n_same)
    return EmbeddingSpace(other)


def test_different_vocabularies_are_refused():
    base = deep_view()
    other = other_model_space(base, 60)
    with pytest.raises(VocabularyMismatchError, match="shared_tokens=True"):
        align(base, other)


def test_shared_tokens_option_aligns_over_the_common_tokens():
    base = deep_view()
    other = other_model_space(permuted(base, seed=6), 60)
    result = align(base, other, shared_tokens=True, groups=["ff_key", "ff_value"])
    assert result.provenance["n_tokens"] == 60
    assert result.provenance["items"].startswith("shared tokens")
    perm = other.view
    assert isinstance(perm, PermutedView)
    assert result.score(**_expected(perm))["layers"]["combined"]["fraction_matched"] == 1.0
    # The kernel ran over exactly those 60 columns: compare one entry with a dense reference.
    x = base.layer(0).W_in.T  # type: ignore[union-attr]
    B = EmbeddingSpace(base).read.matrix[:, :60]
    dense = _dense_corr(x.float() @ B, x.float() @ B)
    assert result.similarity["ff_key"][0, perm.expected_matches()[0][0]] == pytest.approx(
        float(dense.abs().mean()), rel=1e-4
    )


def test_bad_options_are_refused():
    base = deep_view()
    with pytest.raises(InvalidArgumentError, match="unknown parameter group"):
        align(base, base, groups=["ff_keys"])
    with pytest.raises(InvalidArgumentError, match="aggregate"):
        align(base, base, aggregate="mean")
    with pytest.raises(InvalidArgumentError, match="space"):
        align(base, base, space="vocab")
    with pytest.raises(BasisError, match="linear"):
        align(EmbeddingSpace(base, write="readout"), base)
    with pytest.raises(BasisError, match="transport"):
        align(EmbeddingSpace(base, transport=lambda layer, x, side: x), base)
    with pytest.raises(InvalidArgumentError, match="expected_layers"):
        align(base, base, groups=["o"]).score(expected_layers=[0])


def test_permuted_view_refuses_group_splitting_head_orders():
    base = deep_view()
    with pytest.raises(InvalidArgumentError, match="mixes key/value groups"):
        PermutedView(base, heads=[[0, 2, 1, 3]] * N_LAYERS)
    with pytest.raises(InvalidArgumentError, match="permutation"):
        PermutedView(base, layers=[0, 0, 1, 2, 3, 4])


def test_permuted_heads_and_neurons_keep_each_layer_function():
    # The known answer must itself be right: reordering heads (with their kv groups) and
    # neurons, layers kept, leaves every layer's circuits and MLP function unchanged.
    base = deep_view()
    shuffled = PermutedView.shuffled(base, seed=7)
    same_layers = PermutedView(base, heads=shuffled.head_orders, neurons=shuffled.neuron_orders)
    x = torch.randn(5, base.spec.d_model)
    for layer in range(N_LAYERS):
        a, b = base.layer(layer), same_layers.layer(layer)
        torch.testing.assert_close(
            torch.einsum("hdr,her->de", a.W_V, a.W_O.transpose(1, 2)),
            torch.einsum("hdr,her->de", b.W_V, b.W_O.transpose(1, 2)),
        )
        torch.testing.assert_close(
            torch.einsum("hdr,her->de", a.W_Q, a.W_K), torch.einsum("hdr,her->de", b.W_Q, b.W_K)
        )

        def mlp(lw):
            return (torch.nn.functional.silu(x @ lw.W_gate) * (x @ lw.W_in)) @ lw.W_out

        torch.testing.assert_close(mlp(a), mlp(b))
        assert not torch.equal(a.W_in, b.W_in)  # the neurons really moved
    with pytest.raises(UnsupportedModelError, match="no model to hook"):
        _ = same_layers.hook_names


def test_permuted_view_moves_per_head_qk_norm_gains_with_their_heads():
    # OLMo-2 normalises the whole projection: q/k-norm gains are [n_heads, d_head] and
    # [n_kv_heads, d_head], so they must move with the heads for the QK circuit to survive.
    view = adapt(tm.arch_bridge("Olmo2ForCausalLM"))
    assert view.layer(0).q_norm_w is not None and view.layer(0).q_norm_w.ndim == 2
    same_layers = PermutedView(view, heads=PermutedView.shuffled(view, 1).head_orders)
    for layer in range(view.spec.n_layers):
        a, b = view.layer(layer), same_layers.layer(layer)
        torch.testing.assert_close(
            torch.einsum("hdr,her->de", a.W_Q_qk, a.W_K_qk),
            torch.einsum("hdr,her->de", b.W_Q_qk, b.W_K_qk),
        )
