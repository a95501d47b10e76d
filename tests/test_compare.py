"""tl_embspace.compare: hooks, logit lens, collectors, streaming, corpus and the agreement protocol.

Everything is checked on the tiny seeded models of ``tinymodels`` against dense references built
from a plain ``run_with_cache`` (hook names spelt out here, independently of the adapters).
"""

import dataclasses

import pytest
import torch

import tl_embspace as te
from tl_embspace import compare as C
from tl_embspace import vocab
from tl_embspace.adapters import adapt
from tl_embspace.compare.agreement import agreement, overlap, partner_positions
from tl_embspace.errors import EmbSpaceError, InvalidArgumentError

from . import tinymodels as tm

DECODERS = ["llama-gqa-untied", "gpt2-mha-tied", "neox-parallel"]


def _tokens(seed=0, shape=(3, 12)):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, tm.D_VOCAB - 4, shape, generator=g)


@pytest.fixture(
    scope="module",
    params=[(c, b) for c in DECODERS for b in tm.backends()],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def decoder(request):
    case, backend = request.param
    return tm.load(case, backend)


# -- hooks ---------------------------------------------------------------------------------------
class _Boom(Exception):
    pass


@pytest.mark.parametrize("error", [_Boom, KeyboardInterrupt])
def test_hooks_are_removed_when_the_block_raises(decoder, error):
    user_calls = []
    name = adapt(decoder).hook_names.at("resid_post", 0)
    hp = C.hooks.hook_point(decoder, name)
    hp.add_hook(lambda x, hook: user_calls.append(1))  # the user's own hook must survive
    try:
        before = C.active_hook_count(decoder)
        with pytest.raises(error):
            with C.attached(decoder, [(name, lambda x, hook: None)] * 3):
                assert C.active_hook_count(decoder) == before + 3
                raise error()
        assert C.active_hook_count(decoder) == before
        with pytest.raises(error):  # raised from inside a hook, during the forward pass
            C.stream(
                decoder,
                _tokens(),
                {"x": C.Reducer((name,), lambda x: (_ for _ in ()).throw(error()))},
                progress=False,
            )
        assert C.active_hook_count(decoder) == before
        decoder(_tokens())
        assert user_calls  # still attached and firing
    finally:
        hp.remove_hooks("fwd")
    assert C.active_hook_count(decoder) == 0


def test_unknown_hook_name_is_refused_and_nothing_is_left(decoder):
    name = adapt(decoder).hook_names.at("resid_post", 0)
    with pytest.raises(InvalidArgumentError, match="no hook point"):
        with C.attached(decoder, [(name, lambda x, hook: None), ("no.such.hook", print)]):
            pass
    assert C.active_hook_count(decoder) == 0


# -- logit lens ----------------------------------------------------------------------------------
def test_logit_lens_of_the_last_layer_is_the_models_logits(decoder):
    tokens = _tokens()
    logits = decoder(tokens)
    last = adapt(decoder).spec.n_layers - 1
    lens = C.logit_lens(decoder, tokens, layers=[last])[last]
    torch.testing.assert_close(lens, logits.float(), atol=1e-4, rtol=1e-4)
    assert C.active_hook_count(decoder) == 0


def test_logit_lens_recomputes_the_norm_statistics_per_vector(decoder):
    """Layer 0's lens: the final norm applied to layer 0's residual, not the final scale."""
    tokens = _tokens()
    cache = decoder.run_with_cache(tokens)[1]
    view = adapt(decoder)
    h = cache["blocks.0.hook_resid_post"].float()
    g = view.globals
    if view.spec.norm_type == "LN":
        h = h - h.mean(-1, keepdim=True)
    normed = h / (h.pow(2).mean(-1, keepdim=True) + view.spec.eps).sqrt()
    normed = normed * (1 if g.ln_final_w is None else g.ln_final_w) + (
        0 if g.ln_final_b is None else g.ln_final_b
    )
    expected = normed @ view.W_U + (0 if view.b_U is None else view.b_U)
    torch.testing.assert_close(C.logit_lens(decoder, tokens, layers=0)[0], expected)


@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "resid_post"])
def test_streamed_lens_topk_equals_the_dense_lens(decoder, site):
    tokens = _tokens(1, (5, 9))
    view = adapt(decoder)
    if site == "resid_mid" and view.spec.parallel_attn_mlp:
        with pytest.raises(EmbSpaceError, match="no residual between"):
            C.logit_lens_topk(decoder, tokens, site=site, progress=False)
        return
    cache = decoder.run_with_cache(tokens)[1]
    streamed = C.logit_lens_topk(decoder, tokens, site=site, k=7, batch_size=2, progress=False)
    for layer, got in streamed.items():
        resid = cache[f"blocks.{layer}.hook_{site}"]
        dense = view.logits(resid).topk(7, dim=-1)
        assert torch.equal(got.ids, dense.indices)
        torch.testing.assert_close(got.scores, dense.values)
    assert C.active_hook_count(decoder) == 0


def test_project_hooks_streams_any_d_model_hook(decoder):
    tokens = _tokens(2, (4, 8))
    view = adapt(decoder)
    names = [view.hook_names.at("mlp_out", 1), view.hook_names.at("attn_out", 0)]
    got = C.project_hooks(decoder, tokens, names, basis="W_U", k=4, batch_size=3, progress=False)
    cache = decoder.run_with_cache(tokens)[1]
    for name in names:
        dense = (cache[name].float() @ view.W_U.float()).topk(4, dim=-1)
        assert torch.equal(got[name].ids, dense.indices)
        assert got[name].basis == "W_U"


@pytest.mark.skipif(tm.has_hooked(), reason="tools.analysis.logit_readout is TransformerLens 4")
@pytest.mark.parametrize("case", DECODERS)
def test_logit_lens_matches_transformer_lens_logit_readout(case):
    from transformer_lens.tools.analysis import logit_lens as tl_logit_lens
    from transformer_lens.tools.analysis import logit_readout

    model = tm.bridge(case)
    tokens = _tokens(3, (2, 10))
    for site in ("resid_pre", "resid_post"):
        resid = C.residuals(model, tokens, site)
        for h in resid.values():
            theirs = logit_readout(model, h, top_k=5)
            mine = C.lens_logits(model, h).topk(5, dim=-1)
            assert theirs.top_ids is not None
            assert torch.equal(theirs.top_ids, mine.indices)
            torch.testing.assert_close(theirs.values.float(), mine.values, atol=1e-5, rtol=1e-5)
    # Their whole-stack lens (resid_pre of every block, then the last resid_post) agrees too.
    stack = tl_logit_lens(model, tokens, positions=None, top_k=5)
    ours = C.logit_lens_topk(model, tokens, site="resid_pre", k=5, progress=False)
    assert stack.readout.top_ids is not None and stack.labels[0] == "0_pre"
    for layer, got in ours.items():
        assert torch.equal(stack.readout.top_ids[layer], got.ids)


# -- collectors ----------------------------------------------------------------------------------
def test_collectors_match_the_models_hooks(decoder):
    tokens = _tokens(4, (2, 10))
    cache = decoder.run_with_cache(tokens)[1]
    view = adapt(decoder)
    coeffs = C.ff_coefficients(decoder, tokens)
    z = C.head_z(decoder, tokens)
    patterns = C.attention_patterns(decoder, tokens)
    for layer in range(view.spec.n_layers):
        lw = view.layer(layer)
        # The coefficients are what W_out multiplies: rebuild the MLP output from them.
        mlp = coeffs[layer] @ lw.W_out + (0 if lw.b_out is None else lw.b_out)
        torch.testing.assert_close(mlp, cache[f"blocks.{layer}.hook_mlp_out"], atol=1e-5, rtol=1e-4)
        # z: TransformerLens's own hook_z, and the attention output rebuilt from it.
        torch.testing.assert_close(
            z[layer], cache[f"blocks.{layer}.attn.hook_z"].float(), atol=1e-5, rtol=1e-4
        )
        out = torch.einsum("bphd,hdm->bpm", z[layer], lw.W_O) + (0 if lw.b_O is None else lw.b_O)
        torch.testing.assert_close(
            out, cache[f"blocks.{layer}.hook_attn_out"], atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(patterns[layer], cache[f"blocks.{layer}.attn.hook_pattern"])


def test_gated_coefficients_include_the_w_in_branch():
    model = tm.load("llama-gqa-untied", "bridge")
    tokens = _tokens(5, (2, 6))
    cache = model.run_with_cache(tokens)[1]
    view = adapt(model)
    lw = view.layer(1)
    x = cache["blocks.1.ln2.hook_normalized"] * lw.ln2_w
    expected = torch.nn.functional.silu(x @ lw.W_gate) * (x @ lw.W_in)
    torch.testing.assert_close(
        C.ff_coefficients(model, tokens, 1)[1], expected, atol=1e-5, rtol=1e-4
    )


# -- corpus --------------------------------------------------------------------------------------
def test_corpus_windows_from_strings_and_files(tmp_path, decoder):
    texts = [" ".join(f"w{i % 80}" for i in range(j, j + 20)) for j in range(5)]
    win = C.windows(decoder, texts, positions=30, seq_len=8)
    assert win.n_positions == 30 and win.tokens.shape[1] == 8
    bos = decoder.tokenizer.bos_token_id
    if win.source["bos"] is not None:
        assert bool((win.tokens[:, 0] == bos).all()) and not bool(win.scored[:, 0].any())
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(texts), encoding="utf-8")
    assert torch.equal(C.windows(decoder, path, positions=30, seq_len=8).tokens, win.tokens)


def test_encoder_windows_lead_with_the_classification_token():
    model = tm.load("bert-encoder", "bridge")
    model.tokenizer.cls_token = "w5"  # the tiny tokenizer has no [CLS]; give it one
    win = C.windows(model, ["w1 w2 w3 w4 w6 w7 w8 w9 w10 w11"], positions=6, seq_len=4)
    cls = model.tokenizer.convert_tokens_to_ids("w5")
    assert win.source["bos"] == cls and bool((win.tokens[:, 0] == cls).all())
    assert win.n_positions == 6 and not bool(win.scored[:, 0].any())


@pytest.mark.parametrize(
    "corpus, match",
    [
        ([], "no text"),
        (["   ", ""], "no text"),
        ("/no/such/file.txt", "cannot read"),
        (["w1 w2"], "fewer than"),
        (42, "must be a text file"),
    ],
)
def test_bad_corpora_are_refused(decoder, corpus, match):
    with pytest.raises(C.CorpusError, match=match):
        C.windows(decoder, corpus, positions=10, seq_len=8)


# -- agreement protocol --------------------------------------------------------------------------
def _dense_agreement(model, tokens, scored, n, k, seed, allowed=None, standardised=False):
    """The protocol written out densely: full caches, full logits, full projections, sets.

    ``allowed``: rank only these tokens (A and B); ``standardised``: project the parameters
    with ``W_U`` divided by its column norms (the lens keeps the model's logits).
    """
    view = adapt(model)
    logits_final = model(tokens)
    cache = model.run_with_cache(tokens)[1]
    W_U = view.W_U.float()
    W_P = W_U / W_U.norm(dim=0) if standardised else W_U

    def top(scores):
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        return scores.topk(k).indices.tolist()

    n_pos = int(scored.sum())
    partner = partner_positions(n_pos, seed)
    last = view.spec.n_layers - 1

    def centered_lens(resid):
        normed = view.final_norm(resid)[scored]
        return (normed - normed.mean(0)) @ W_U

    out = {}
    for layer in range(view.spec.n_layers):
        lw = view.layer(layer)
        resid = cache[f"blocks.{layer}.hook_resid_post"]
        lens = {
            ("same", "raw"): view.logits(resid)[scored],
            ("final", "raw"): logits_final.float()[scored],
            ("same", "centered"): centered_lens(resid),
            ("final", "centered"): centered_lens(cache[f"blocks.{last}.hook_resid_post"]),
        }
        coeff = cache[f"blocks.{layer}.mlp.hook_post"][scored]  # [P, d_mlp]
        z = cache[f"blocks.{layer}.attn.hook_z"][scored].flatten(1)  # [P, h * d_head]
        vectors = {
            "ff_key": (lw.W_in.T, coeff),
            "ff_value": (lw.W_out, coeff),
            "v": (lw.W_V.permute(0, 2, 1).reshape(-1, lw.W_V.shape[1]), z),
            "o": (lw.W_O.reshape(-1, lw.W_O.shape[2]), z),
        }
        if lw.W_gate is not None:
            vectors["ff_gate"] = (lw.W_gate.T, coeff)
        for kind, (vecs, act) in vectors.items():
            chosen = act.topk(n, dim=-1).indices
            for variant in ("raw", "centered"):
                vs = vecs.float() - (vecs.float().mean(0) if variant == "centered" else 0)
                token_sets = [set(top(v @ W_P)) for v in vs]
                a = [set().union(*(token_sets[j] for j in row.tolist())) for row in chosen]
                for ref in ("same", "final"):
                    b = [set(top(row)) for row in lens[(ref, variant)]]
                    aligned = torch.tensor([len(a[i] & b[i]) / k for i in range(n_pos)])
                    base = torch.tensor([len(a[partner[i]] & b[i]) / k for i in range(n_pos)])
                    out[(layer, kind, ref, variant)] = (aligned, base)
    return out


def test_agreement_equals_the_dense_protocol(decoder):
    tokens = _tokens(6, (4, 10))
    res = agreement(
        decoder,
        tokens,
        n=3,
        k=6,
        positions=35,
        batch_size=3,
        seed=7,
        n_boot=200,
        variants=("raw", "centered"),
        progress=False,
    )
    scored = C.windows(decoder, tokens, positions=35).scored
    dense = _dense_agreement(decoder, tokens, scored, n=3, k=6, seed=7)
    assert set(res.scores) == set(dense)
    for key, (aligned, base) in dense.items():
        got_aligned, got_base = res.scores[key]
        torch.testing.assert_close(got_aligned, aligned, msg=f"aligned {key}")
        torch.testing.assert_close(got_base, base, msg=f"baseline {key}")
        row = res.row(*key)
        assert row.aligned == pytest.approx(float(aligned.mean()))
        assert row.ci_low <= row.difference <= row.ci_high
    assert C.active_hook_count(decoder) == 0
    d = res.to_dict()
    assert d["provenance"]["write_basis"] == "W_U" and d["provenance"]["n_positions"] == 35
    assert "| layer |" in res.table("final", variant="centered")


def test_agreement_over_a_vocabulary_equals_the_dense_protocol_restricted_to_it(decoder):
    view = adapt(decoder)
    allowed = torch.rand(view.W_U.shape[1], generator=torch.Generator().manual_seed(5)) < 0.5
    paper = te.EmbeddingSpace.paper(view)
    choice = vocab.choose_vocabulary(
        paper, "raw", token_filter=vocab.MaskFilter(allowed=allowed, label="every other")
    )
    choice = dataclasses.replace(choice, space=vocab.normalised_space(paper))
    tokens = _tokens(6, (4, 10))
    options = dict(n=3, k=6, positions=35, batch_size=3, seed=7, n_boot=50, progress=False)
    res = agreement(decoder, tokens, vocab=choice, variants=("raw", "centered"), **options)
    scored = C.windows(decoder, tokens, positions=35).scored
    dense = _dense_agreement(
        decoder, tokens, scored, n=3, k=6, seed=7, allowed=allowed, standardised=True
    )
    assert set(res.scores) == set(dense)
    for key, (aligned, base) in dense.items():
        torch.testing.assert_close(res.scores[key][0], aligned, msg=f"aligned {key}")
        torch.testing.assert_close(res.scores[key][1], base, msg=f"baseline {key}")
    # The restriction matters: the unrestricted protocol scores differently somewhere.
    plain = agreement(decoder, tokens, space=choice.space, **options)
    assert any(not torch.equal(plain.scores[key][0], res.scores[key][0]) for key in plain.scores)
    prov = res.provenance
    assert prov["vocab"]["filter"]["label"] == "every other"
    assert "standardised(random)" in prov["write_basis"]
    assert f"over the {int(allowed.sum())} tokens" in prov["vocab_tokens"]
    assert C.active_hook_count(decoder) == 0


def test_agreement_vocab_by_name_records_the_choice_and_refuses_mixed_arguments(decoder):
    tokens = _tokens(6, (4, 10))
    options = dict(n=2, k=4, positions=20, layers=[0], kinds=["ff_value"], progress=False)
    res = agreement(decoder, tokens, vocab="hygiene", **options)
    expected = vocab.choose_vocabulary(te.EmbeddingSpace.paper(adapt(decoder)), "hygiene")
    assert res.provenance["vocab"] == expected.record
    assert agreement(decoder, tokens, **options).provenance["vocab"]["mode"] == "raw"
    with pytest.raises(InvalidArgumentError, match="not both"):
        agreement(decoder, tokens, vocab=expected, space=te.EmbeddingSpace(adapt(decoder)))
    with pytest.raises(InvalidArgumentError, match="vocab must be"):
        agreement(decoder, tokens, vocab="clean", **options)
    few = vocab.MaskFilter(allowed=torch.arange(adapt(decoder).W_U.shape[1]) < 3, label="3")
    with pytest.raises(InvalidArgumentError, match="fewer than k=4"):
        agreement(decoder, tokens, vocab=dataclasses.replace(expected, token_filter=few), **options)


def test_baseline_pairing_is_seeded_and_never_the_same_position():
    p = partner_positions(1000, 3)
    assert not bool((p == torch.arange(1000)).any())
    assert torch.equal(p, partner_positions(1000, 3))
    assert not torch.equal(p, partner_positions(1000, 4))


def test_overlap_counts_distinct_tokens_of_b_in_a():
    a = torch.tensor([[1, 1, 2, 3], [9, 9, 9, 9]])
    b = torch.tensor([[1, 2, 5], [4, 5, 6]])
    assert overlap(a, b).tolist() == [pytest.approx(2 / 3), 0.0]


# -- a model built so that the answer is known ---------------------------------------------------
def _memory_model(permute_values: bool):
    """One block whose MLP is a token -> unembedding lookup that dominates the residual.

    Attention writes nothing (``o_proj = 0``); neuron ``i`` fires for the token whose embedding
    its gate and in-projection match (a gate bias silences every other neuron); its value
    vector is ``W_U[:, i]`` (or, with ``permute_values``, ``W_U[:, π(i)]`` for a derangement
    ``π``). Norm gains are 1, so the logit lens of the block's output is dominated by the firing
    neuron's value vector.
    """
    import tempfile

    from transformer_lens.model_bridge import TransformerBridge
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=tm.D_VOCAB,
        hidden_size=32,
        intermediate_size=tm.D_VOCAB,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        mlp_bias=True,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        emb = torch.randn(tm.D_VOCAB, 32)
        unembed = torch.randn(tm.D_VOCAB, 32)
        model.model.embed_tokens.weight.copy_(emb)
        model.lm_head.weight.copy_(unembed)
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()
        # The MLP reads rmsnorm(e_t) = sqrt(32) e_t / |e_t|: gate i is positive only where the
        # cosine of e_t and e_i exceeds 0.9, i.e. for i = t; every other neuron is ~0.
        unit = 10 * emb / emb.norm(dim=-1, keepdim=True)
        layer.mlp.gate_proj.weight.copy_(unit)
        layer.mlp.gate_proj.bias.fill_(-10 * 32**0.5 * 0.9)
        layer.mlp.up_proj.weight.copy_(unit)
        layer.mlp.up_proj.bias.zero_()
        layer.mlp.down_proj.bias.zero_()
        values = unembed.T.clone()  # column i = W_U[:, i]
        if permute_values:
            values = values[:, (torch.arange(tm.D_VOCAB) + 1) % tm.D_VOCAB]
        layer.mlp.down_proj.weight.copy_(values)
    d = tempfile.mkdtemp(prefix="memory-", dir=tm._ROOT.name)
    model.eval().save_pretrained(d)
    tm.tokenizer().save_pretrained(d)
    return TransformerBridge.boot_transformers(d, tokenizer=tm.tokenizer())


def test_value_vectors_that_are_the_unembeddings_agree_and_permuted_ones_do_not():
    from tl_embspace import EmbeddingSpace

    model = _memory_model(permute_values=False)
    tokens = _tokens(8, (8, 12))
    common = dict(n=5, k=5, kinds=["ff_value"], positions=96, seed=1, progress=False)
    res = agreement(model, tokens, **common)
    row = res.row(0, "ff_value", "same")
    assert row.aligned > 0.95, row
    assert row.baseline < 0.4 and row.ci_low > 0.5, row
    # The same run, but the values read are not the ones the model used: back to the baseline.
    permuted = EmbeddingSpace.paper(_memory_model(permute_values=True))
    wrong = agreement(model, tokens, space=permuted, **common).row(0, "ff_value", "same")
    assert wrong.aligned < 0.4, wrong
    assert abs(wrong.difference) < 0.1 and wrong.ci_low < 0 < wrong.ci_high + 0.05, wrong


# -- interventions -------------------------------------------------------------------------------
def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_interventions_change_exactly_what_they_say_and_leave_the_model_as_it_was(decoder):
    from tl_embspace.compare.intervene import (
        Direction,
        Neuron,
        SubHead,
        intervention,
        run_intervention,
        token_direction,
    )

    tokens = _tokens(9, (2, 8))
    view = adapt(decoder)
    names = view.hook_names
    before_params = _params(decoder)
    watch = {
        "post": C.Reducer((names.at("mlp_post", 0),), lambda x: x),
        "mlp": C.Reducer((names.at("mlp_out", 0),), lambda x: x),
        "attn": C.Reducer((names.at("attn_out", 1),), lambda x: x),
        "z": C.collect.z_reducer(view, 1, lambda z: z),
    }
    base = C.stream(decoder, tokens, watch, progress=False)
    edits = [Neuron(0, 3, value=5.0), SubHead(1, 2, 4, scale=-2.0)]
    with intervention(decoder, edits):
        edited = C.stream(decoder, tokens, watch, progress=False)
    # The neuron's coefficient is 5 and the MLP output moved by (5 - c) W_out[3], nothing else.
    assert bool((edited["post"][..., 3] == 5.0).all())
    delta = (5.0 - base["post"][..., 3])[..., None] * view.layer(0).W_out[3]
    torch.testing.assert_close(edited["mlp"] - base["mlp"], delta, atol=1e-5, rtol=1e-4)
    # The sub-head's coordinate of z is scaled by -2 (z is read before the edit applies to the
    # attention output; layer 0's neuron edit changed layer 1's input, hence edited["z"]).
    z = edited["z"][:, :, 2, 4]
    others = edited["attn"] - (-3 * z)[..., None] * view.layer(1).W_O[2, 4]
    lw = view.layer(1)
    rebuilt = torch.einsum("bphd,hdm->bpm", edited["z"], lw.W_O) + (0 if lw.b_O is None else lw.b_O)
    torch.testing.assert_close(others, rebuilt, atol=1e-5, rtol=1e-4)
    # A direction added to the last residual moves the logits as the readout says.
    last = view.spec.n_layers - 1
    v = token_direction(decoder, 7)
    res = run_intervention(decoder, tokens, [Direction(last, v, 3.0)])
    final = C.residuals(decoder, tokens, "resid_post", last)[last]
    torch.testing.assert_close(res.after, view.logits(final + 3.0 * v), atol=1e-4, rtol=1e-4)
    assert bool((res.after[..., 7] > res.before[..., 7]).all())
    # Bit-identical weights and no hook left, also when the wrapped call raises.
    with pytest.raises(_Boom):
        with intervention(decoder, edits):
            raise _Boom
    assert C.active_hook_count(decoder) == 0
    after_params = _params(decoder)
    assert all(torch.equal(before_params[k], after_params[k]) for k in before_params)


def test_subhead_edit_alone_is_exact(decoder):
    from tl_embspace.compare.intervene import SubHead, intervention

    tokens = _tokens(10, (2, 8))
    view = adapt(decoder)
    watch = {
        "attn": C.Reducer((view.hook_names.at("attn_out", 1),), lambda x: x),
        "z": C.collect.z_reducer(view, 1, lambda z: z),
    }
    base = C.stream(decoder, tokens, watch, progress=False)
    with intervention(decoder, [SubHead(1, 2, 4, value=0.0)]):
        edited = C.stream(decoder, tokens, watch, progress=False)
    delta = (-base["z"][:, :, 2, 4])[..., None] * view.layer(1).W_O[2, 4]
    torch.testing.assert_close(edited["attn"] - base["attn"], delta, atol=1e-5, rtol=1e-4)


def test_bad_edits_are_refused(decoder):
    from tl_embspace.compare.intervene import Neuron, intervention

    for edit in [Neuron(0, 10**6, value=1.0), Neuron(0, 1), Neuron(0, 1, value=1.0, scale=2.0)]:
        with pytest.raises(InvalidArgumentError):
            with intervention(decoder, [edit]):
                decoder(_tokens())
    assert C.active_hook_count(decoder) == 0


@pytest.mark.parametrize("backend", tm.backends())
def test_encoder_agreement_same_layer_through_the_input_embedding(backend):
    """An encoder has no final-layer lens here: same-layer only, read through W_E."""
    from tl_embspace import EmbeddingSpace

    model = tm.load("bert-encoder", backend)
    tokens = _tokens(11, (3, 10))
    with pytest.raises(EmbSpaceError, match="references=\\('same',\\)"):
        agreement(model, tokens, positions=20, progress=False)
    space = EmbeddingSpace(adapt(model), read="W_E", write="W_E")
    res = agreement(
        model, tokens, n=2, k=5, positions=20, references=("same",), lens_basis="W_E",
        space=space, progress=False,
    )  # fmt: skip
    view = adapt(model)
    win = C.windows(model, tokens, positions=20)
    cache = model.run_with_cache(win.tokens)[1]
    scored = win.scored
    resid = cache[view.hook_names.at("resid_post", 1)][scored].float()
    b = (resid @ view.W_E.float().T).topk(5, dim=-1).indices
    coeff = cache["blocks.1.mlp.hook_post"][scored]
    token_sets = [
        set((v @ view.W_E.float().T).topk(5).indices.tolist()) for v in view.layer(1).W_out
    ]
    chosen = coeff.topk(2, dim=-1).indices
    a = [set().union(*(token_sets[j] for j in row.tolist())) for row in chosen]
    expected = torch.tensor([len(a[i] & set(b[i].tolist())) / 5 for i in range(20)])
    torch.testing.assert_close(res.scores[(1, "ff_value", "same", "raw")][0], expected)
    assert res.provenance["read_basis"] == "W_E^T" and res.provenance["lens"] == "W_E^T"


def test_related_jaccard_equals_a_dense_reference():
    from tl_embspace.compare.related import related_jaccard

    model = tm.load("llama-gqa-untied", "bridge")
    view = adapt(model)
    rows = related_jaccard(model, k=10, max_pairs=20, seed=3)
    assert {(r.layer, r.pair) for r in rows} == {
        (layer, p) for layer in (0, 1) for p in ("key_value", "v_o", "q_k")
    }
    W_U = view.W_U.float()

    def top(v):
        return set((v.float() @ W_U).abs().topk(10).indices.tolist())

    # Rebuild the same seeded sample and pairing, then score with Python sets.
    g = torch.Generator().manual_seed(3)
    for r in rows:
        lw = view.layer(r.layer)
        d = lw.W_Q.shape[1]
        left, right = {
            "key_value": (lw.W_in.T, lw.W_out),
            "v_o": (lw.W_V.permute(0, 2, 1).reshape(-1, d), lw.W_O.reshape(-1, d)),
            "q_k": (lw.W_Q.permute(0, 2, 1).reshape(-1, d), lw.W_K.permute(0, 2, 1).reshape(-1, d)),
        }[r.pair]
        m = left.shape[0]
        pick = torch.randperm(m, generator=g)[:20].sort().values
        partner = (pick + torch.randint(1, m, (pick.numel(),), generator=g)) % m
        assert not bool((partner == pick).any())

        def jac(a, b):
            return len(a & b) / len(a | b)

        related = sum(jac(top(left[i]), top(right[i])) for i in pick) / len(pick)
        shuffled = sum(
            jac(top(left[i]), top(right[j])) for i, j in zip(pick, partner, strict=True)
        ) / len(pick)
        assert r.related == pytest.approx(related, abs=1e-6)
        assert r.shuffled == pytest.approx(shuffled, abs=1e-6)


# -- circuits: QK vs attention, OV vs direct logit effect ---------------------------------------
def _dense_circuits(model, tokens, scored, threshold, seed):
    """Both circuit checks written out densely: full caches, vocab x vocab scores, loops."""
    view = adapt(model)
    cache = model.run_with_cache(tokens)[1]
    last = view.spec.n_layers - 1
    E, W_U = view.W_E.float(), view.W_U.float()
    shuffled = tokens.clone()
    shuffled[scored] = tokens[scored][partner_positions(int(scored.sum()), seed)]
    final = cache[f"blocks.{last}.hook_resid_post"].float()
    w_final = view.globals.ln_final_w
    out = {}
    for layer in range(view.spec.n_layers):
        lw = view.layer(layer)
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"].float()
        z = cache[f"blocks.{layer}.attn.hook_z"].float()
        for h in range(view.spec.n_heads):
            qk = E @ lw.W_Q_qk[h] @ lw.W_K_qk[h].T @ E.T  # [d_vocab, d_vocab]
            ov = E @ lw.W_V[h] @ lw.W_O[h] @ W_U
            figs = {m: ([], []) for m in ("qk", "ov")}
            for b in range(tokens.shape[0]):
                for i in range(tokens.shape[1]):
                    keys = [j for j in range(1, i + 1) if scored[b, j]]
                    if not scored[b, i] or not keys:
                        continue
                    qk_keys = [j for j in keys if j != i]  # QK leaves the own position out
                    top = max(keys, key=lambda j: (float(pattern[b, h, i, j]), -j))
                    for toks, which in ((tokens, 0), (shuffled, 1)):
                        s = qk[toks[b, i]]
                        if len(qk_keys) >= 2:
                            qk_top = max(qk_keys, key=lambda j: (float(pattern[b, h, i, j]), -j))
                            # A key holding the top key's token ties (the same pair).
                            t_top = int(toks[b, qk_top])
                            others = [int(toks[b, j]) for j in qk_keys if j != qk_top]
                            auc = sum(0.5 if t == t_top else float(s[t_top] > s[t]) for t in others)
                            figs["qk"][which].append(auc / len(others))
                        if float(pattern[b, h, i, top]) >= threshold:
                            o = z[b, i, h] @ lw.W_O[h]
                            hf = final[b, i]
                            if view.spec.norm_type == "LN":
                                o, hf = o - o.mean(), hf - hf.mean()
                            dla = o / (hf.pow(2).mean() + view.spec.eps).sqrt()
                            dla = (dla if w_final is None else dla * w_final) @ W_U
                            r = torch.corrcoef(torch.stack([dla, ov[toks[b, top]]]))[0, 1]
                            figs["ov"][which].append(float(r))
            for m, (aligned, base) in figs.items():
                if len(aligned) >= 2:
                    out[(layer, h, m)] = (torch.tensor(aligned), torch.tensor(base))
    return out


def test_circuit_agreement_equals_the_dense_computation(decoder):
    from tl_embspace.compare.circuits import circuit_agreement

    tokens = _tokens(12, (3, 10))
    res = circuit_agreement(
        decoder, tokens, positions=28, threshold=0.3, batch_size=2, seed=5, n_boot=100,
        progress=False,
    )  # fmt: skip
    scored = C.windows(decoder, tokens, positions=28).scored
    dense = _dense_circuits(decoder, tokens, scored, threshold=0.3, seed=5)
    assert set(res.scores) == set(dense) and any(k[2] == "ov" for k in dense)
    for key, (aligned, base) in dense.items():
        got_aligned, got_base = res.scores[key]
        torch.testing.assert_close(got_aligned, aligned.float(), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got_base, base.float(), atol=1e-4, rtol=1e-4)
        row = res.row(*key)
        assert row.n == len(aligned) and row.ci_low <= row.difference <= row.ci_high
    assert C.active_hook_count(decoder) == 0
    d = res.to_dict()
    assert d["provenance"]["read_basis"] == "W_E^T" and d["provenance"]["write_basis"] == "W_U"
    assert {s["measure"] for s in d["layers"]} == {"qk", "ov"}
    assert "| layer | QK" in res.table()


def _same_token_head(random_circuits: bool):
    """A one-head GPT-2 whose head attends to the positions holding the query's own token.

    No position embeddings and unit norm gains; ``W_Q = 4 I``, ``W_K = I`` score a pair by the
    dot product of the two tokens' normalised embeddings, so the head attends to itself (and to
    earlier copies of its token) by construction; ``W_V = W_O = I`` copy the token's embedding.
    ``random_circuits`` replaces all four with random matrices (attention no longer follows
    the tokens, and the readings belong to another model).
    """
    import tempfile

    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=tm.D_VOCAB, n_embd=32, n_layer=1, n_head=1, n_positions=64)
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        model.transformer.wte.weight.copy_(torch.randn(tm.D_VOCAB, 32))
        model.transformer.wpe.weight.zero_()
        attn = model.transformer.h[0].attn
        eye = torch.eye(32)
        if random_circuits:
            attn.c_attn.weight.copy_(torch.randn(32, 96) / 32**0.5)
            attn.c_proj.weight.copy_(torch.randn(32, 32) / 32**0.5)
        else:
            attn.c_attn.weight.copy_(torch.cat([4 * eye, eye, eye], dim=1))
            attn.c_proj.weight.copy_(eye)
        attn.c_attn.bias.zero_()
        attn.c_proj.bias.zero_()
        model.transformer.h[0].mlp.c_proj.weight.zero_()
        model.transformer.h[0].mlp.c_proj.bias.zero_()
    d = tempfile.mkdtemp(prefix="same-token-", dir=tm._ROOT.name)
    model.eval().save_pretrained(d)
    tm.tokenizer().save_pretrained(d)
    return TransformerBridge.boot_transformers(d, tokenizer=tm.tokenizer())


def test_a_head_built_to_attend_by_token_beats_the_shuffled_baseline():
    from tl_embspace import EmbeddingSpace
    from tl_embspace.compare.circuits import circuit_agreement

    model = _same_token_head(random_circuits=False)
    # Eight distinct tokens: most rows hold earlier copies of their query's token.
    tokens = torch.randint(4, 12, (8, 12), generator=torch.Generator().manual_seed(13))
    common = dict(positions=96, seed=2, n_boot=200, progress=False)
    res = circuit_agreement(model, tokens, **common)
    qk, ov = res.row(0, 0, "qk"), res.row(0, 0, "ov")
    assert qk.aligned > 0.95 and abs(qk.baseline - 0.5) < 0.15 and qk.ci_low > 0.3, qk
    assert ov.aligned > 0.9 and ov.baseline < 0.3 and ov.ci_low > 0.5, ov
    # The same run read with another model's (random) circuits: no longer above the baseline
    # (with eight tokens, chance can also put it below).
    wrong = EmbeddingSpace(_same_token_head(random_circuits=True))
    res_wrong = circuit_agreement(model, tokens, space=wrong, **common)
    for right in (qk, ov):
        row = res_wrong.row(0, 0, right.measure)
        assert row.difference < 0.1 and row.aligned < right.aligned - 0.3, row


def test_circuit_agreement_refuses_what_it_cannot_measure():
    from tl_embspace.compare.circuits import circuit_agreement

    encoder = tm.load("bert-encoder", "bridge")
    tokens = _tokens(14, (3, 10))
    with pytest.raises(EmbSpaceError, match="measures=\\('qk',\\)"):
        circuit_agreement(encoder, tokens, positions=20, progress=False)
    res = circuit_agreement(encoder, tokens, positions=20, measures=("qk",), progress=False)
    assert {r.measure for r in res.rows} == {"qk"}
    model = tm.load("llama-gqa-untied", "bridge")
    for bad in [dict(measures=("qk", "nope")), dict(threshold=0.0), dict(threshold=1.5)]:
        with pytest.raises(InvalidArgumentError):
            circuit_agreement(model, tokens, positions=20, progress=False, **bad)
    with pytest.raises(EmbSpaceError, match="linear basis"):
        from tl_embspace import EmbeddingSpace

        circuit_agreement(
            model, tokens, positions=20, progress=False,
            space=EmbeddingSpace(model, write="readout"),
        )  # fmt: skip
