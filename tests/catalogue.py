"""A catalogue of bad and odd inputs, each with the outcome the library guarantees.

Every entry is a test (``tests/test_reliability.py::test_catalogue``) and a row of the README's
"Guarantees" table (``scripts/guarantees_table.py`` renders it; a test checks the README is
current). An entry ends either in a *correct answer* (its ``call`` checks the answer itself and
returns normally) or in an *error*: an ``EmbSpaceError`` subclass named in ``raises`` whose
message contains ``names`` (the problem and, where there is one, the fix).

The command-line entries are in the same list: they must exit with status 2 after printing one
``error: ...`` line, before any model is loaded where the mistake can be seen without one.
"""

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import tl_embspace as te
from tl_embspace import errors

from . import tinymodels as tm

CASE = "llama-gqa-untied"  # 2 layers, d_model 32, 4 heads / 2 kv heads, d_mlp 48, 96 tokens


@functools.cache
def _model() -> Any:
    return tm.bridge(CASE)


@dataclass
class Ctx:
    """What a catalogue call gets: the shared tiny model (never to be edited) and a scratch dir."""

    tmp: Path

    @property
    def model(self) -> Any:
        return _model()

    def copy(self) -> Any:
        """A private copy of the model, for entries that must edit weights."""
        return copy.deepcopy(_model())


@dataclass(frozen=True)
class Entry:
    """One input and its guaranteed outcome.

    Attributes:
        area: The table's grouping (models, selections, k, filters, ...).
        given: The input, as a user would describe it.
        call: Runs it; for an expected answer it also checks the answer.
        raises: The error class expected, or None for a correct answer.
        names: A fragment the error message must contain (what the user must read).
        answer: For a correct answer: what it is, in words.
    """

    area: str
    given: str
    call: Callable[[Ctx], Any]
    raises: type[BaseException] | None = None
    names: str = ""
    answer: str = ""
    loads: bool = False  # command line: the mistake can only be seen once the model is loaded
    # The argument's type annotation already excludes it: the test suite's runtime type checker
    # (jaxtyping + beartype) would refuse it first, so the test checks it in a plain interpreter.
    typed: bool = False

    @property
    def id(self) -> str:
        return f"{self.area}: {self.given}"

    @property
    def outcome(self) -> str:
        if self.raises is None:
            return f"answer: {self.answer}"
        if self.area == "cli":
            when = "after loading the model" if self.loads else "before loading the model"
            return f"exit 2, one line `error: …{self.names}…`, {when}"
        return f"`{self.raises.__name__}`: “…{self.names}…”"


# -- helpers for entries that check an answer ------------------------------------------------


def _ff(source: Any, **kw: Any) -> Any:
    return te.interpret("ff_value", source, layer=0, **kw)


def _dense_top(vectors: torch.Tensor, matrix: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k ids of ``vectors @ matrix``, ties to the lower id (a dense reference)."""
    scores = (vectors.double() @ matrix.double()).float()
    # A stable sort keeps equal scores in id order.
    return torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]


def _half_precision_agrees(ctx: Ctx, dtype: torch.dtype) -> None:
    """A half-precision copy ranks as float32 does, except among scores within its rounding."""
    low = ctx.copy().to(dtype)
    got = _ff(low, k=10)
    view = te.adapt(ctx.model)
    W_out, W_U = view.layer(0).W_out.float(), view.W_U.float()
    scores = W_out @ W_U  # float32 scores of the float32 weights
    eps = torch.finfo(dtype).eps
    # Rounding both factors to `dtype` moves a score by at most ~2 eps |x| |b| per term.
    tol = 4 * eps * (W_out.abs() @ W_U.abs())
    want = torch.topk(scores, 10, dim=1).indices
    for row in range(scores.shape[0]):
        for rank in range(10):
            a, b = int(got.top_ids[row, rank]), int(want[row, rank])
            if a != b:
                gap = abs(float(scores[row, a] - scores[row, b]))
                assert gap <= float(tol[row, a] + tol[row, b]), (row, rank, a, b, gap)


def _pinv_of_bfloat16_large_vocab(ctx: Ctx) -> None:
    """The pinv basis of a bfloat16 model with 4,096 tokens is a right inverse, not zeros."""
    model = tm.arch_bridge("LlamaForCausalLM", vocab_size=4096).to(torch.bfloat16)
    space = te.EmbeddingSpace(model, read="pinv")
    W_U = te.adapt(model).W_U.float()
    identity = W_U.double() @ space.read.matrix.double().T
    err = (identity - torch.eye(W_U.shape[0], dtype=torch.float64)).abs().max()
    assert float(err) < 1e-3, float(err)


def _edit_then_reuse(ctx: Ctx) -> None:
    """A space built before an in-place edit answers for the edited model."""
    model = ctx.copy()
    space = te.EmbeddingSpace(te.adapt(model).folded())
    before = _ff(space, neurons=[0], k=5).top_scores
    with torch.no_grad():
        for p in model.blocks[0].mlp.parameters():
            p.mul_(-1)  # every FF value flips sign: top and bottom swap
    after = _ff(space, neurons=[0], k=5)
    assert not torch.equal(after.top_scores, before)
    fresh = _ff(te.EmbeddingSpace(te.adapt(model).folded()), neurons=[0], k=5)
    assert torch.equal(after.top_ids, fresh.top_ids)
    assert torch.equal(after.top_scores, fresh.top_scores)


def _provenance_says_weights(ctx: Ctx) -> None:
    raw = _ff(ctx.model, k=3).provenance.weights
    processed = _ff(tm.bridge(CASE, processed=True), k=3).provenance.weights
    assert (raw, processed) == ("raw", "tl-processed")


def _affine_transport_on_vectors(ctx: Ctx) -> None:
    """An affine transport on single vectors: the scores of T(x), exactly."""
    shift = torch.linspace(-1, 1, 32)
    res = _ff(ctx.model, neurons=[0, 1], k=5, transport=lambda layer, v, side: v + shift)
    view = te.adapt(ctx.model)
    x = view.layer(0).W_out[[0, 1]].float() + shift
    assert torch.equal(res.top_ids, _dense_top(x, view.W_U.float(), 5))


def _linear_transport_on_pairs(ctx: Ctx) -> None:
    """A linear transport on a pair circuit equals the basis it implies (T(x) B = x (A B))."""
    gen = torch.Generator().manual_seed(0)
    A = torch.eye(32) + 0.1 * torch.randn(32, 32, generator=gen)

    def lens(layer: int, v: torch.Tensor, side: str) -> torch.Tensor:
        return v @ A if side == "write" else v

    view = te.adapt(ctx.model)
    via_transport = te.interpret("ov_pairs", ctx.model, layer=1, head=2, k=5, transport=lens)
    via_basis = te.interpret("ov_pairs", ctx.model, layer=1, head=2, k=5, write=A @ view.W_U)
    for got, want in zip(via_transport.top, via_basis.top, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _k_is_the_whole_vocabulary(ctx: Ctx) -> None:
    res = _ff(ctx.model, neurons=[0], k=tm.D_VOCAB)
    assert sorted(res.top_ids[0].tolist()) == list(range(tm.D_VOCAB))
    assert sorted(res.bottom_ids[0].tolist()) == list(range(tm.D_VOCAB))
    assert bool((res.top_scores[0][:-1] >= res.top_scores[0][1:]).all())


def _empty_selection(ctx: Ctx) -> None:
    res = _ff(ctx.model, neurons=[])
    assert len(res) == 0 and tuple(res.top_ids.shape) == (0, 20)


def _nan_in(ctx: Ctx, module: str) -> Any:
    """A copy with one NaN in every parameter of block 0's ``module``."""
    model = ctx.copy()
    with torch.no_grad():
        for p in getattr(model.blocks[0], module).parameters():
            p.view(-1)[0] = float("nan")
    return model


def _inf_in_v(ctx: Ctx) -> Any:
    model = ctx.copy()
    with torch.no_grad():
        for p in model.blocks[0].attn.parameters():
            p.view(-1)[0] = float("inf")
    return model


class _OtherTokenizer:
    """A tokenizer of another model: more tokens than this model's vocabulary."""

    def __len__(self) -> int:
        return 1000

    def get_vocab(self) -> dict[str, int]:
        return {f"t{i}": i for i in range(1000)}


class _PermutedTokenizer:
    """Same size as the model's tokenizer, but two tokens swapped."""

    def __init__(self, real: Any) -> None:
        vocab = dict(real.get_vocab())
        a, b = sorted(vocab, key=vocab.get)[5:7]
        vocab[a], vocab[b] = vocab[b], vocab[a]
        self._vocab = vocab

    def __len__(self) -> int:
        return len(self._vocab)

    def get_vocab(self) -> dict[str, int]:
        return self._vocab


def _third_party(ctx: Ctx) -> Any:
    """A registered third-party interpreter that raises: its own error reaches the caller."""

    @te.register_interpreter(
        "catalogue_boom", produces="vectors", indexed_by="free", side="read", scope="model"
    )
    def boom(source: Any) -> Any:
        raise ZeroDivisionError("third-party bug")

    try:
        te.interpret("catalogue_boom", ctx.model)
    except ZeroDivisionError as e:
        assert "third-party bug" in str(e)
    else:
        raise AssertionError("the interpreter's error was swallowed")
    finally:
        te.interpreters.remove("catalogue_boom")


def _duplicate_registration(ctx: Ctx) -> Any:
    te.register_interpreter(
        "ff_value", produces="vectors", indexed_by="neuron", side="write", scope="layer"
    )(lambda source, **kw: None)


def _job(ctx: Ctx, **options: Any) -> Any:
    from tl_embspace.job import interpret_model

    out = ctx.tmp / "job"
    try:
        return interpret_model(ctx.model, out, progress=False, **options)
    finally:
        assert not out.exists(), "a refused job must write nothing"


# -- the command line -------------------------------------------------------------------------

CLI_MODEL = "tiny-catalogue-llama"


def _cli(ctx: Ctx, *args: str) -> Any:
    """Run ``tl-embspace run`` in-process; see ``test_catalogue`` for what is checked."""
    from tl_embspace import cli

    return cli.main(["run", "--model", CLI_MODEL, "--no-progress", "--k", "2", *args])


def _out(ctx: Ctx) -> str:
    return str(ctx.tmp / "out")


def _file_as_out(ctx: Ctx) -> Any:
    (ctx.tmp / "file.txt").write_text("mine")
    return _cli(ctx, "--out", str(ctx.tmp / "file.txt"), "--overwrite")


CATALOGUE: list[Entry] = [
    # models
    Entry(
        "model",
        "a Hugging Face model",
        lambda c: _ff(tm.hf_model(CASE)),
        errors.UnsupportedModelError,
        "expected a TransformerLens model",
    ),
    Entry(
        "model",
        "a plain torch module",
        lambda c: _ff(torch.nn.Linear(3, 3)),
        errors.UnsupportedModelError,
        "expected a TransformerLens model",
    ),
    Entry("model", "None", lambda c: _ff(None), errors.UnsupportedModelError, "NoneType"),
    Entry(
        "model",
        "a model on the meta device",
        lambda c: _ff(c.copy().to("meta")),
        errors.UnsupportedModelError,
        "meta device",
    ),
    Entry(
        "model",
        "a bridge in compatibility mode vs raw",
        _provenance_says_weights,
        answer="results say `tl-processed` or `raw` in `provenance.weights`",
    ),
    Entry(
        "model",
        "weights edited in place after a space was built",
        _edit_then_reuse,
        answer="the space answers for the edited weights (parameter versions are watched)",
    ),
    Entry(
        "model",
        "an untrained unembedding read through `W_U`",
        lambda c: _ff(te.adapt(c.model, facts=te.ModelFacts(unembed_trained=False))),
        errors.BasisError,
        "was never trained",
    ),
    # selections
    Entry(
        "selection",
        "`layer=99` (2 layers)",
        lambda c: te.interpret("ff_value", c.model, layer=99),
        errors.SelectionError,
        "out of range",
    ),
    Entry(
        "selection",
        "`layer=-3` (2 layers)",
        lambda c: te.interpret("ff_value", c.model, layer=-3),
        errors.SelectionError,
        "out of range",
    ),
    Entry(
        "selection",
        "`layer=1.0`",
        lambda c: te.interpret("ff_value", c.model, layer=1.0),
        errors.OptionError,
        "must be one int",
        typed=True,
    ),
    Entry(
        "selection",
        "`layer=True`",
        lambda c: te.interpret("ff_value", c.model, layer=True),
        errors.OptionError,
        "must be one int",
    ),
    Entry(
        "selection",
        "`neurons=[999]`",
        lambda c: _ff(c.model, neurons=[999]),
        errors.SelectionError,
        "out of range",
    ),
    Entry(
        "selection",
        "`neurons=<bool mask>`",
        lambda c: _ff(c.model, neurons=torch.ones(48, dtype=torch.bool)),
        errors.OptionError,
        "not a boolean mask",
    ),
    Entry(
        "selection",
        "`neurons=[1.5]`",
        lambda c: _ff(c.model, neurons=[1.5]),
        errors.OptionError,
        "must be integer ids",
        typed=True,
    ),
    Entry(
        "selection",
        "`neurons=[1, 1]`",
        lambda c: _ff(c.model, neurons=[1, 1]),
        errors.InvalidArgumentError,
        "more than once",
    ),
    Entry("selection", "`neurons=[]`", _empty_selection, answer="an empty result (0 rows)"),
    Entry(
        "selection",
        "`head=4` (4 heads)",
        lambda c: te.interpret("ov_pairs", c.model, layer=0, head=4),
        errors.SelectionError,
        "out of range",
    ),
    Entry(
        "selection",
        "`components=[99]`",
        lambda c: te.interpret("svd_ov", c.model, layer=0, head=0, components=[99]),
        errors.SelectionError,
        "out of range",
    ),
    Entry(
        "selection",
        '`which="both"` (SVD side)',
        lambda c: te.interpret("svd_ov", c.model, layer=0, head=0, which="both"),
        errors.InvalidArgumentError,
        "which must be one of",
    ),
    Entry(
        "selection",
        '`side="output"` (direction)',
        lambda c: te.interpret("direction", c.model, vectors=torch.ones(1, 32), side="output"),
        errors.InvalidArgumentError,
        "side must be 'read' or 'write'",
    ),
    # k
    Entry(
        "k", "`k=0`", lambda c: _ff(c.model, k=0), errors.InvalidArgumentError, "k must be positive"
    ),
    Entry(
        "k",
        "`k=-1`",
        lambda c: _ff(c.model, k=-1),
        errors.InvalidArgumentError,
        "k must be positive",
    ),
    Entry(
        "k",
        "`k=2.5`",
        lambda c: _ff(c.model, k=2.5),
        errors.OptionError,
        "k must be an int",
        typed=True,
    ),
    Entry(
        "k",
        '`k="5"`',
        lambda c: _ff(c.model, k="5"),
        errors.OptionError,
        "k must be an int",
        typed=True,
    ),
    Entry(
        "k",
        "k larger than the vocabulary",
        lambda c: _ff(c.model, k=tm.D_VOCAB + 1),
        errors.FilterError,
        "lower k",
    ),
    Entry(
        "k", "k equal to the vocabulary", _k_is_the_whole_vocabulary, answer="every token, ranked"
    ),
    Entry(
        "k",
        "pair k larger than the allowed pairs",
        lambda c: te.interpret("ov_pairs", c.model, layer=0, head=0, k=tm.D_VOCAB**2 + 1),
        errors.FilterError,
        "lower k",
    ),
    Entry(
        "k",
        "`copying_scores(n_tokens=-5)`",
        lambda c: te.copying_scores(c.model, n_tokens=-5),
        errors.InvalidArgumentError,
        "n_tokens must be positive",
    ),
    Entry(
        "k",
        "`interpret_model(..., pair_k=0)`",
        lambda c: _job(c, pair_k=0),
        errors.InvalidArgumentError,
        "pair_k must be positive",
    ),
    # filters
    Entry(
        "filter",
        "an invalid regex",
        lambda c: _ff(c.model, token_filter=te.TokenFilter(regex="[")),
        errors.FilterError,
        "invalid regex",
    ),
    Entry(
        "filter",
        "a filter that leaves nothing",
        lambda c: _ff(c.model, token_filter=te.TokenFilter(ascii=True, regex="^[^\\x00-\\x7f]+$")),
        errors.FilterError,
        "allows none of the 96 tokens",
    ),
    Entry(
        "filter",
        "an unknown token in `include`",
        lambda c: _ff(c.model, token_filter=te.TokenFilter(include=["zzzzqq"])),
        errors.FilterError,
        "is not the surface text of any token",
    ),
    Entry(
        "filter",
        "k larger than the tokens a filter allows",
        lambda c: _ff(c.model, k=5, token_filter=te.TokenFilter(include=[0, 1])),
        errors.FilterError,
        "lower k or loosen the filter",
    ),
    # NaN / Inf
    Entry(
        "weights",
        "NaN in `W_out` (FF values)",
        lambda c: _ff(_nan_in(c, "mlp")),
        errors.InvalidArgumentError,
        "NaN or infinite",
    ),
    Entry(
        "weights",
        "Inf in attention weights (copying scores)",
        lambda c: te.copying_scores(_inf_in_v(c), layers=[0]),
        errors.InvalidArgumentError,
        "NaN or infinite",
    ),
    Entry(
        "weights",
        "NaN in attention weights (SVD of OV)",
        lambda c: te.interpret("svd_ov", _inf_in_v(c), layer=0, head=0),
        errors.InvalidArgumentError,
        "NaN or infinite",
    ),
    Entry(
        "weights",
        "NaN in `W_in` (SVD)",
        lambda c: te.interpret("svd_in", _nan_in(c, "mlp"), layer=0),
        errors.InvalidArgumentError,
        "NaN or infinite",
    ),
    Entry(
        "weights",
        "a NaN vector (`direction`)",
        lambda c: te.interpret(
            "direction", c.model, vectors=torch.full((1, 32), torch.nan), side="write"
        ),
        errors.InvalidArgumentError,
        "NaN or infinite",
    ),
    Entry(
        "weights",
        "a float16 model",
        lambda c: _half_precision_agrees(c, torch.float16),
        answer="float32's top tokens, except among scores within float16 rounding",
    ),
    Entry(
        "weights",
        "a bfloat16 model",
        lambda c: _half_precision_agrees(c, torch.bfloat16),
        answer="float32's top tokens, except among scores within bfloat16 rounding",
    ),
    Entry(
        "weights",
        "`pinv` basis of a bfloat16 model, 4,096 tokens",
        _pinv_of_bfloat16_large_vocab,
        answer="a right inverse of `W_U` (not all zeros)",
    ),
    # bases and tokenizers
    Entry(
        "basis",
        "an unknown basis name",
        lambda c: te.EmbeddingSpace(c.model, write="W_X"),
        errors.BasisError,
        "unknown basis",
    ),
    Entry(
        "basis",
        "a custom basis with the wrong vocabulary size",
        lambda c: te.EmbeddingSpace(c.model, write=torch.randn(32, 50)),
        errors.VocabularyMismatchError,
        "has 50 columns",
    ),
    Entry(
        "basis",
        "a custom basis with the wrong d_model",
        lambda c: te.EmbeddingSpace(c.model, write=torch.randn(31, tm.D_VOCAB)),
        errors.BasisError,
        "must be a [d_model=32, d_vocab] matrix",
    ),
    Entry(
        "basis",
        "the `readout` basis for token pairs",
        lambda c: te.interpret("ov_pairs", c.model, layer=0, head=0, write="readout"),
        errors.BasisError,
        "needs a linear basis",
    ),
    Entry(
        "basis",
        "a tokenizer larger than the model's vocabulary",
        lambda c: te.EmbeddingSpace(c.model, tokenizer=_OtherTokenizer()),
        errors.VocabularyMismatchError,
        "belongs to another model",
    ),
    Entry(
        "basis",
        "a tokenizer that maps tokens to other ids",
        lambda c: te.EmbeddingSpace(c.model, tokenizer=_PermutedTokenizer(c.model.tokenizer)),
        errors.VocabularyMismatchError,
        "disagrees with the model's own tokenizer",
    ),
    # transports
    Entry(
        "transport",
        "not callable",
        lambda c: te.EmbeddingSpace(c.model, transport=3),
        errors.BasisError,
        "must be a callable",
        typed=True,
    ),
    Entry(
        "transport",
        "returns the wrong shape",
        lambda c: _ff(c.model, transport=lambda layer, v, side: v[:, :3]),
        errors.BasisError,
        "it must map [n, d_model] to [n, d_model]",
    ),
    Entry(
        "transport",
        "raises",
        lambda c: _ff(c.model, transport=lambda layer, v, side: 1 / 0),
        errors.BasisError,
        "raised ZeroDivisionError",
    ),
    Entry(
        "transport",
        "returns NaN",
        lambda c: _ff(c.model, transport=lambda layer, v, side: v * torch.nan),
        errors.BasisError,
        "returned NaN",
    ),
    Entry(
        "transport",
        "affine (a bias), on token pairs",
        lambda c: te.interpret(
            "ov_pairs", c.model, layer=0, head=0, transport=lambda layer, v, side: v + 1.0
        ),
        errors.BasisError,
        "needs a linear transport",
    ),
    Entry(
        "transport",
        "affine, on SVD directions",
        lambda c: te.interpret(
            "svd_ov", c.model, layer=0, head=0, transport=lambda layer, v, side: v + 1.0
        ),
        errors.BasisError,
        "needs a linear transport",
    ),
    Entry(
        "transport",
        "affine, on single vectors",
        _affine_transport_on_vectors,
        answer="the scores of T(x), as a dense reference",
    ),
    Entry(
        "transport",
        "linear, on token pairs",
        _linear_transport_on_pairs,
        answer="the pairs of the basis the transport implies",
    ),
    # registry and results
    Entry(
        "registry",
        "an unknown interpreter",
        lambda c: te.interpret("ff_valeu", c.model),
        errors.RegistryError,
        "unknown interpreter",
    ),
    Entry(
        "registry",
        "a misspelt option",
        lambda c: te.interpret("ff_value", c.model, layr=0),
        errors.OptionError,
        "did you mean 'layer'",
    ),
    Entry(
        "registry",
        "a duplicate registration",
        _duplicate_registration,
        errors.RegistryError,
        "already",
    ),
    Entry(
        "registry",
        "a third-party interpreter that raises",
        _third_party,
        answer="its own exception reaches the caller unchanged",
    ),
    Entry(
        "result",
        '`pairs("bottm")`',
        lambda c: te.interpret("ov_pairs", c.model, layer=0, head=0, k=2).pairs("bottm"),
        errors.InvalidArgumentError,
        "which must be 'top' or 'bottom'",
    ),
    Entry(
        "result",
        "`top_tokens(99)` on 2 vectors",
        lambda c: _ff(c.model, neurons=[0, 1]).top_tokens(99),
        errors.SelectionError,
        "out of range",
    ),
    # command line (exit status 2, one `error:` line; see test_catalogue)
    Entry(
        "cli",
        '`--model ""`',
        lambda c: _cli(c, "--model", "", "--out", _out(c)),
        SystemExit,
        "expected a model name",
    ),
    Entry(
        "cli",
        "an unknown model",
        lambda c: _cli(c, "--model", "tl-embspace-tests/nope", "--out", _out(c)),
        errors.ZooError,
        "is not in the local",
        loads=True,
    ),
    Entry(
        "cli",
        "`--layers 99` (2 layers)",
        lambda c: _cli(c, "--layers", "99", "--out", _out(c)),
        errors.InvalidArgumentError,
        "has 2 layers",
        loads=True,
    ),
    Entry(
        "cli",
        "`--layers 0 0`",
        lambda c: _cli(c, "--layers", "0", "0", "--out", _out(c)),
        SystemExit,
        "given more than once",
    ),
    Entry(
        "cli",
        "`--out` an existing file, `--overwrite`",
        _file_as_out,
        errors.OutputFolderError,
        "it is a file, not a folder",
    ),
    Entry(
        "cli",
        "`--out` where nothing can be created",
        lambda c: _cli(c, "--out", "/proc/tl-embspace/out"),
        errors.OutputFolderError,
        "cannot create anything",
    ),
    Entry(
        "cli",
        "`--write readout`",
        lambda c: _cli(c, "--write", "readout", "--out", _out(c)),
        SystemExit,
        "invalid choice: 'readout'",
    ),
]


def run_typed_entries(tmp: str) -> dict[str, tuple[str, str]]:
    """Run every ``typed`` entry; ``{id: (error class name, message)}`` ("" when none raised).

    Called in a plain interpreter (no runtime type checker) by ``test_catalogue``.
    """
    out = {}
    for entry in CATALOGUE:
        if entry.typed:
            try:
                entry.call(Ctx(Path(tmp)))
                out[entry.id] = ("", "")
            except Exception as e:  # noqa: BLE001 - recorded, checked by the test
                out[entry.id] = (type(e).__name__, str(e))
    return out
