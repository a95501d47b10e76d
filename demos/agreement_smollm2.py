"""The agreement protocol on a real model and corpus: ``tl-embspace compare`` with defaults.

Default: the offline SmolLM2-135M-Instruct (bridge) over the first 1,000 non-BOS positions of
WikiText-2's test split (``$TL_EMBSPACE_DATA/wikitext-2/test.txt``, default
``../shared/data`` beside the project), n=5, k=50, every layer, both references and both
variants (the paper's raw scores and the centred one). Any other option is passed through;
``--circuits`` adds each head's QK reading vs its attention and OV reading vs its direct logit
effect, ``--no-agreement`` leaves the paper's protocol out. Writes ``agreement.json``,
``agreement.md`` (the per-layer tables) and ``agreement.png`` (the plot) into ``--out``.

Usage::

    python demos/agreement_smollm2.py --out agreement-out            # the paper's protocol
    python demos/agreement_smollm2.py --circuits --no-agreement --out circuits-out
    python demos/agreement_smollm2.py --positions 200 --layers 0 15 29 --out quick
"""

import os
import sys
from pathlib import Path

from tl_embspace import cli

DATA = Path(
    os.environ.get(
        "TL_EMBSPACE_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--corpus" not in argv:
        argv += ["--corpus", str(DATA / "wikitext-2" / "test.txt")]
    sys.exit(cli.main(["compare", *argv]))
