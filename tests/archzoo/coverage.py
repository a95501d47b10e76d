"""Run every check on every architecture of the installed TransformerLens; summarise.

Used by ``tests/test_coverage.py`` (CI) and ``scripts/coverage_table.py`` (the README table), so
the table and the tests always report the same thing.
"""

import functools
import warnings
from importlib.metadata import version
from typing import Any

import torch

from . import models
from .checks import CHECKS, Status, not_applicable, verify, verify_hooked

# Levels, best first. "verified": every weight check that applies passed (attention, MLP and
# the logit lens at least); "partial": no check failed but some were refused or did not apply;
# "refused": adapt() refused with UnsupportedModelError; "unrunnable": TransformerLens cannot
# build or run the model; "FAIL": some check failed (a silently wrong answer or a bare error).
LEVELS = ("verified", "partial", "refused", "unrunnable", "FAIL")
CORE = ("attention", "mlp", "logit_lens")


def all_checks() -> tuple[str, ...]:
    """The checks run on this TransformerLens line (``hooked_tl3`` on 3.x only)."""
    return CHECKS + (("hooked_tl3",) if models.tl_major() < 4 else ())


@functools.cache
def outcome(name: str) -> dict[str, Status]:
    """Every check of ``all_checks()`` on the tiny ``name``, built and run once per process.

    Warnings are silenced here: TransformerLens and transformers warn about many families (MoE
    precision, soft-capping and centring, deprecations), and under pytest's
    ``filterwarnings = error`` they would turn into errors, so the outcome would depend on
    who runs the harness (the table script or CI).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _outcome(name)


def _outcome(name: str) -> dict[str, Status]:
    torch.manual_seed(0)
    try:
        bridge = models.bridge(name)
    except Exception as e:  # noqa: BLE001 - TransformerLens's own limitation, listed as such
        msg = " ".join(str(e).split())[:160]
        why = not_applicable(f"TransformerLens cannot build it offline: {type(e).__name__}: {msg}")
        return {c: why for c in all_checks()}
    result = verify(bridge)
    if models.tl_major() < 4:
        result["hooked_tl3"] = verify_hooked(bridge, lambda: models.hooked(name))
    # Messages name the model by its temporary folder; name it by its architecture instead so
    # the table is the same from one run to the next.
    folder = models.hf_dir(name)
    return {k: Status(s.kind, s.reason.replace(folder, f"tiny-{name}")) for k, s in result.items()}


def level(result: dict[str, Status]) -> str:
    """One word for an architecture's outcome (see ``LEVELS``)."""
    kinds = {k: s.kind for k, s in result.items()}
    if "fail" in kinds.values():
        return "FAIL"
    if kinds["adapts"] == "refused":
        return "refused"
    if kinds["adapts"] != "pass" or "cannot run" in result["attention"].reason:
        return "unrunnable"
    if all(kinds[c] == "pass" for c in CORE):
        return "verified"
    return "partial"


def run_all() -> dict[str, Any]:
    """JSON-ready results for every factory architecture on the installed TransformerLens."""
    rows: dict[str, Any] = {}
    for name in models.factory_architectures():
        why = models.scope(name)
        if why is not None:
            rows[name] = {"scope": why}
            continue
        result = outcome(name)
        rows[name] = {
            "scope": None,
            "tiny": models.describe(name),
            "level": level(result),
            "checks": {k: s.to_json() for k, s in result.items()},
        }
    return {
        "transformer_lens": version("transformer-lens"),
        "transformers": version("transformers"),
        "architectures": rows,
    }


def status_of(d: dict[str, str]) -> Status:
    """A Status back from its JSON form."""
    return Status(d["kind"], d.get("reason", ""))
