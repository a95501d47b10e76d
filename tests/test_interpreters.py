"""Dense references: every interpreter equals a plain-torch implementation of the paper's formula.

Vocabularies are tiny (96 tokens), so the vocab x vocab matrices are built here — and only here.
Parametrised over backends (HookedTransformer/Encoder on TransformerLens 3.x, the bridge on both
lines), MHA/GQA/MQA, tied/untied, LN/RMS, gated/non-gated, rotary/absolute, decoder/encoder, and
raw vs folded weights.
"""

import functools

import pytest
import torch

import tl_embspace as te
from tl_embspace.adapters import adapt

from . import tinymodels as tm

K = 7


def _variants():
    for case in tm.CASES:
        for backend in tm.backends():
            yield pytest.param(case, backend, "raw", id=f"{case}-{backend}-raw")
            if not case.startswith("bert"):
                yield pytest.param(case, backend, "folded", id=f"{case}-{backend}-folded")


def _view(case, backend, weights):
    model = tm.load(case, backend)
    view = adapt(model)
    return model, (view.folded() if weights == "folded" else view)


def dense_topk(scores, k):
    """Top and bottom k of each row, ties to the lower id, by a stable sort."""
    order_top = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    order_bot = torch.sort(scores, dim=-1, descending=False, stable=True).indices[..., :k]
    return order_top, scores.gather(-1, order_top), order_bot, scores.gather(-1, order_bot)


def check_vectors(res, dense_scores):
    """Same scores as the dense top/bottom k, and every returned id really has its score.

    Ids are compared through their dense scores rather than one by one, so that float32
    near-ties (equal up to rounding, e.g. with the ill-conditioned pinv basis) cannot fail the
    test while a wrong token still does.
    """
    dense_scores = dense_scores.float()
    ti, ts, bi, bs = dense_topk(dense_scores, res.top_ids.shape[-1])
    for ids, scores, ref in (
        (res.top_ids, res.top_scores, ts),
        (res.bottom_ids, res.bottom_scores, bs),
    ):
        tol = dict(atol=1e-4 * float(ref.abs().max().clamp_min(1)), rtol=1e-4)
        torch.testing.assert_close(scores, ref, **tol)
        torch.testing.assert_close(dense_scores.gather(-1, ids), scores, **tol)
        assert all(len(set(row)) == len(row) for row in ids.tolist())  # no token twice


def check_pairs(res, dense):
    """Pairs version of check_vectors: sorted scores match, each (i, j) has its dense score."""
    flat = dense.flatten().float()
    n = dense.shape[1]
    for (scores, rows, cols), desc in ((res.top, True), (res.bottom, False)):
        ref = torch.sort(flat, descending=desc, stable=True).values[: len(scores)]
        tol = dict(atol=1e-4 * float(ref.abs().max().clamp_min(1)), rtol=1e-4)
        torch.testing.assert_close(scores, ref, **tol)
        torch.testing.assert_close(flat[rows * n + cols], scores, **tol)
        assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == len(scores)


def bases(view):
    """Dense read/write basis matrices for the default space and the paper's spaces."""
    W_E, W_U = view.W_E.float(), view.W_U.float()
    return {
        "default": (W_E.T, W_U),
        "paper": (W_U, W_U),
        # Singular values below the float32 rounding level are zero (see space._pinv_t).
        "paper_exact": (
            torch.linalg.pinv(W_U.double(), rtol=max(W_U.shape) * 1.2e-7).T.float(),
            W_U,
        ),
    }


def spaces(model, view):
    # The tiny encoder is a BertForMaskedLM: its MLM head is trained, so every basis applies.
    tok = model.tokenizer
    return {
        "default": te.EmbeddingSpace(view, tokenizer=tok),
        "paper": te.EmbeddingSpace.paper(view, tokenizer=tok),
        "paper_exact": te.EmbeddingSpace.paper(view, exact=True, tokenizer=tok),
    }


SPACES = ("default", "paper", "paper_exact")
N_LAYERS = 2  # every tiny case (tinymodels: num_hidden_layers=2)
#: (interpreter, head) per layer: vector interpreters cover the layer, pairs are one call per head.
CALLS = [(name, None) for name in ("ff_key", "ff_gate", "ff_value", "q", "k", "v", "o")] + [
    (name, h) for h in range(4) for name in ("qk_pairs", "ov_pairs")
]


@functools.cache
def _setup(case, backend, weights):
    """Model, view, the three spaces and their dense bases: built once per variant."""
    model, view = _view(case, backend, weights)
    return view, spaces(model, view), bases(view)


def test_every_tiny_case_has_the_layers_and_heads_the_grid_assumes():
    for case in tm.CASES:
        spec = _setup(case, tm.backends()[0], "raw")[0].spec
        assert (spec.n_layers, spec.n_heads) == (N_LAYERS, 4), case


@pytest.mark.parametrize(
    "name,head", CALLS, ids=[f"{n}" + ("" if h is None else f"-H{h}") for n, h in CALLS]
)
@pytest.mark.parametrize("layer", range(N_LAYERS), ids=lambda x: f"L{x}")
@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("case,backend,weights", list(_variants()))
def test_every_interpreter_matches_its_dense_formula(
    case, backend, weights, space_name, layer, name, head
):
    view, all_spaces, dense_bases = _setup(case, backend, weights)
    spec, space = view.spec, all_spaces[space_name]
    R, W = dense_bases[space_name]
    lw = view.layer(layer)
    if name == "ff_gate" and not spec.gated_mlp:
        # A non-gated MLP: the spec says so, and the interpreter refuses rather than guess.
        assert not te.interpreters["ff_gate"].applies_to(lw)
        with pytest.raises(te.MissingWeightError, match="no W_gate"):
            te.interpret("ff_gate", space, layer=layer, k=K)
        return
    dense = {
        # FF keys (columns of W_in) read; values (rows of W_out) write: v E, k E'ᵀ / k E.
        "ff_key": lambda: lw.W_in.T.float() @ R,
        "ff_gate": lambda: lw.W_gate.T.float() @ R,
        "ff_value": lambda: lw.W_out.float() @ W,
        # Sub-heads: Q/O per query head, K/V per key/value head.
        "q": lambda: torch.cat([lw.W_Q[h].T for h in range(spec.n_heads)]).float() @ R,
        "k": lambda: torch.cat([lw.W_K_grouped[g].T for g in range(spec.n_kv_heads)]).float() @ R,
        "v": lambda: torch.cat([lw.W_V_grouped[g].T for g in range(spec.n_kv_heads)]).float() @ R,
        "o": lambda: torch.cat([lw.W_O[h] for h in range(spec.n_heads)]).float() @ W,
        # Pairs: QK = Rᵀ W_Q W_Kᵀ R (content only), OV = Rᵀ W_V W_O W.
        "qk_pairs": lambda: R.T @ (lw.W_Q[head].float() @ lw.W_K[head].float().T) @ R,
        "ov_pairs": lambda: R.T @ (lw.W_V[head].float() @ lw.W_O[head].float()) @ W,
    }[name]()
    if head is None:
        check_vectors(te.interpret(name, space, layer=layer, k=K), dense)
    else:
        check_pairs(te.interpret(name, space, layer=layer, head=head, k=K), dense)


def _canonical(p):
    """Dense canonical sign: flip so the most extreme vocabulary score is positive."""
    flip = -p.min(-1).values > p.max(-1).values
    return torch.where(flip[:, None], -p, p)


@pytest.mark.parametrize("case,backend,weights", list(_variants()))
def test_svd_directions_match_dense_svd(case, backend, weights):
    model, view = _view(case, backend, weights)
    space = te.EmbeddingSpace(view, tokenizer=model.tokenizer)
    R, W = view.W_E.float().T, view.W_U.float()
    lw = view.layer(0)
    for h in range(view.spec.n_heads):
        W_OV = lw.W_V[h].double() @ lw.W_O[h].double()
        U, S, Vh = torch.linalg.svd(W_OV)
        r = view.spec.d_head
        res = te.interpret("svd_ov", space, layer=0, head=h, k=K)
        torch.testing.assert_close(
            torch.tensor(res.extras["singular_value"]), S[:r].float(), atol=1e-4, rtol=1e-4
        )
        check_vectors(res, _canonical(Vh[:r].float() @ W))
        res_in = te.interpret("svd_ov", space, layer=0, head=h, which="input", k=K)
        check_vectors(res_in, _canonical(U[:, :r].T.float() @ R))
        W_QK = lw.W_Q[h].double() @ lw.W_K[h].double().T
        U, S, Vh = torch.linalg.svd(W_QK)
        check_vectors(
            te.interpret("svd_qk", space, layer=0, head=h, k=K), _canonical(U[:, :r].T.float() @ R)
        )
        check_vectors(
            te.interpret("svd_qk", space, layer=0, head=h, which="key", k=K),
            _canonical(Vh[:r].float() @ R),
        )
    U, S, Vh = torch.linalg.svd(lw.W_in.double(), full_matrices=False)
    check_vectors(te.interpret("svd_in", space, layer=0, k=K), _canonical(U.T.float() @ R))
    U, S, Vh = torch.linalg.svd(lw.W_out.double(), full_matrices=False)
    check_vectors(te.interpret("svd_out", space, layer=0, k=K), _canonical(Vh.float() @ W))


@pytest.mark.parametrize("case", ["gpt2-mha-tied", "llama-gqa-untied"])
def test_copying_scores_match_the_dense_argmax(case):
    """Every head's copying score is the fraction of tokens t with argmax_j (R^T W_OV W)[t, j] = t.

    With more tokens asked for than the vocabulary has, every token is scored; chunk sizes that
    do and do not divide the vocabulary leave the result unchanged (one reused score block).
    """
    model, view = _view(case, tm.backends()[0], "folded")
    space = te.EmbeddingSpace(view, tokenizer=model.tokenizer)
    read, write = space.read.matrix.double(), space.write.matrix.double()
    d_vocab, n_heads = read.shape[1], view.spec.n_heads
    expected = torch.zeros(view.spec.n_layers, n_heads)
    for layer in range(view.spec.n_layers):
        lw = view.layer(layer)
        for h in range(n_heads):
            dense = read.T @ lw.W_V[h].double() @ lw.W_O_written[h].double() @ write
            expected[layer, h] = (dense.argmax(-1) == torch.arange(d_vocab)).double().mean()
    assert expected.max() > 0  # some head copies some token, so a hit count is compared
    for chunk in (1, 7, 512):
        got = te.copying_scores(space, n_tokens=10 * d_vocab, chunk=chunk)
        torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_near_degenerate_singular_values_are_flagged():
    from tl_embspace.interpreters.svd import near_degenerate

    assert near_degenerate(torch.tensor([3.0, 2.0, 1.999, 0.5]), 1e-2) == [False, True, True, False]
    assert near_degenerate(torch.tensor([3.0, 2.0, 1.0]), 1e-2) == [False, False, False]


@pytest.mark.parametrize("backend", tm.backends())
@pytest.mark.parametrize("case", ["llama-gqa-untied", "gpt2-mha-tied"])
def test_readout_basis_applies_final_norm_and_bias(case, backend):
    model = tm.load(case, backend)
    view = adapt(model)
    lw = view.layer(1)
    res = te.interpret("ff_value", model, layer=1, write="readout", k=K)
    dense = view.final_norm(lw.W_out.float()) @ view.W_U.float()
    if view.b_U is not None:
        dense = dense + view.b_U.float()
    check_vectors(res, dense)
    with pytest.raises(te.BasisError, match="linear basis"):
        te.interpret("ov_pairs", model, layer=0, head=0, write="readout")


@pytest.mark.parametrize("backend", tm.backends())
def test_transport_is_applied_before_the_basis(backend):
    model = tm.load("llama-gqa-untied", backend)
    view = adapt(model)
    torch.manual_seed(0)
    T = torch.randn(view.spec.d_model, view.spec.d_model)
    calls = []

    def lens(layer, vectors, side):
        calls.append((layer, side))
        return vectors @ T

    space = te.EmbeddingSpace(model, transport=lens)
    lw = view.layer(1)
    check_vectors(
        te.interpret("ff_value", space, layer=1, k=K), lw.W_out.float() @ T @ view.W_U.float()
    )
    res = te.interpret("ov_pairs", space, layer=1, head=2, k=K)
    left = view.W_E.float() @ (lw.W_V[2].float().T @ T).T
    right = view.W_U.float().T @ (lw.W_O[2].float() @ T).T
    check_pairs(res, left @ right.T)
    assert (1, "write") in calls and (1, "read") in calls
    assert res.provenance.transport == "lens"


def test_direction_bias_and_embedding_interpreters():
    model = tm.load("gpt2-mha-tied", "bridge")
    view = adapt(model)
    vecs = torch.randn(3, view.spec.d_model)
    check_vectors(te.interpret("direction", model, vectors=vecs, k=K), vecs @ view.W_U.float())
    check_vectors(
        te.interpret("direction", model, vectors=vecs, side="read", k=K), vecs @ view.W_E.float().T
    )
    lw = view.layer(0)
    res = te.interpret("bias", model, layer=0, k=K)
    assert res.labels == ("L0.b_O", "L0.b_out")
    check_vectors(res, torch.stack([lw.b_O, lw.b_out]).float() @ view.W_U.float())
    E = view.W_E.float()
    unit = E / E.norm(dim=-1, keepdim=True)
    res = te.interpret("embedding", model, tokens=[5, "w7"], k=K)
    check_vectors(res, unit[[5, 11]] @ unit.T)
    assert res.top_ids[:, 0].tolist() == [5, 11]  # a token is its own nearest neighbour
    with pytest.raises(te.BasisError, match="shape"):
        te.interpret("direction", model, vectors=torch.randn(3, 5))
    with pytest.raises(te.BasisError, match="not in the vocabulary"):
        te.interpret("embedding", model, tokens=["no-such-token"])


def test_filters_restrict_tokens_and_pairs():
    model = tm.load("gpt2-mha-tied", "bridge")
    view = adapt(model)
    flt = te.TokenFilter(regex=r"^w1")
    allowed = flt.mask(model.tokenizer, tm.D_VOCAB)
    res = te.interpret("ff_value", model, layer=0, k=5, token_filter=flt)
    dense = view.layer(0).W_out.float() @ view.W_U.float()
    ti, ts, _, _ = dense_topk(dense.masked_fill(~allowed, float("-inf")), 5)
    _, _, bi, bs = dense_topk(dense.masked_fill(~allowed, float("inf")), 5)
    assert torch.equal(res.top_ids, ti) and torch.equal(res.bottom_ids, bi)
    torch.testing.assert_close(res.top_scores, ts, atol=1e-4, rtol=1e-4)
    assert allowed[res.top_ids].all() and allowed[res.bottom_ids].all()
    pairs = te.interpret(
        "ov_pairs",
        model,
        layer=0,
        head=1,
        k=5,
        token_filter=te.TokenFilter(regex=r"^w1", exclude_same=True),
    )
    for _scores, rows, cols in (pairs.top, pairs.bottom):
        assert allowed[rows].all() and allowed[cols].all() and (rows != cols).all()


def test_results_serialise_with_provenance():
    import json

    model = tm.load("llama-gqa-untied", "bridge")
    res = te.interpret("ff_value", model, layer=0, neurons=[1, 2], k=3)
    d = json.loads(res.to_json())
    assert d["provenance"]["weights"] == "raw" and d["provenance"]["write_basis"] == "W_U"
    assert d["provenance"]["transformer_lens_version"] == adapt(model).spec.tl_version
    assert [v["label"] for v in d["vectors"]] == ["L0.ff_value[1]", "L0.ff_value[2]"]
    assert len(d["vectors"][0]["top"]) == 3
    df = res.to_dataframe()
    assert len(df) == 2 * 2 * 3 and set(df["which"]) == {"top", "bottom"}
    assert "<table>" in res._repr_html_()
    pairs = te.interpret("qk_pairs", model, layer=0, head=0, k=3)
    pd_ = json.loads(pairs.to_json())
    assert "content-only" in pd_["note"] and len(pd_["top"]) == 3
    assert len(pairs.to_dataframe()) == 6


def test_registry_is_loud():
    with pytest.raises(te.RegistryError, match="expected one of: .*ff_value"):
        te.interpreters["ff_valu"]
    spec = te.interpreters["ff_value"]
    with pytest.raises(te.RegistryError, match="already registered"):
        te.interpreters.add("ff_value", spec)
