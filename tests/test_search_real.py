"""The search index on real weights (offline SmolLM2): same hits as a brute-force scan."""

import numpy as np
import pytest

import tl_embspace as te
from tl_embspace.atlas import Atlas, SearchIndex
from tl_embspace.job import interpret_model

pytestmark = pytest.mark.real
TOKENS = (" Paris", " the", " France", "ing", "␣Paris")


@pytest.fixture(scope="module")
def atlas_dir(require_zoo, tmp_path_factory):
    require_zoo("smollm2-135m-instruct")
    model = te.load("smollm2-135m-instruct")
    out = tmp_path_factory.mktemp("smol") / "atlas"
    return interpret_model(
        model,
        out,
        layers=[29],
        k=10,
        pair_k=5,
        svd_components=2,
        copying_tokens=64,
        progress=False,
    )


def test_smollm2_search_equals_a_brute_force_scan(atlas_dir):
    atlas = Atlas.open(atlas_dir)
    with SearchIndex.open(atlas_dir) as index:
        assert index.token_ids(" Paris") == index.token_ids("␣Paris") != []
        for token in TOKENS:
            ids = index.token_ids(token)
            hits = index.promoting(token, limit=None)
            brute = set()
            for table in atlas.layer(29).vectors.values():
                rows, ranks = np.nonzero(np.isin(table.top_ids, ids))
                brute |= {
                    (table.labels[r], int(k), float(table.top_scores[r, k]))
                    for r, k in zip(rows, ranks, strict=True)
                }
            assert {(h.label, h.rank, h.score) for h in hits} == brute, token
