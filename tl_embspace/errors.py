"""One exception family for the whole package.

Every error names the problem and the fix. All derive from :class:`EmbSpaceError`, so a caller
can catch everything this library raises with one ``except``.
"""


class EmbSpaceError(Exception):
    """Base class of every error raised by ``tl_embspace``."""


class UnsupportedModelError(EmbSpaceError, TypeError):
    """The model (or one of its configuration attributes) is not understood by any adapter."""


class UnsupportedLayerError(UnsupportedModelError):
    """One layer of a supported model lacks what was asked for.

    A hybrid model's state-space or convolution layer has no attention weights (no
    ``W_Q``/``W_K``/``W_V``/``W_O`` in the paper's sense); its MLP is still read.
    """


class MissingWeightError(EmbSpaceError, KeyError):
    """The model has no such parameter (e.g. no ``W_pos`` on a rotary model)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class BasisError(EmbSpaceError, ValueError):
    """An embedding-space basis cannot be built or used as asked."""


class FilterError(EmbSpaceError, ValueError):
    """A token filter is malformed or leaves too few tokens for the requested k."""


class RegistryError(EmbSpaceError, KeyError):
    """Unknown or duplicate name in a registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class VocabularyMismatchError(EmbSpaceError, ValueError):
    """Two models or tensors disagree about the vocabulary."""


class ZooError(EmbSpaceError, RuntimeError):
    """An offline zoo model cannot be loaded (missing wheel, missing package, offline hub)."""


class InvalidArgumentError(EmbSpaceError, ValueError):
    """An argument has a value the function or command does not accept.

    For example an unknown backend name, or a layer the loaded model does not have.
    """


class AtlasError(EmbSpaceError, ValueError):
    """A folder is not a complete, readable atlas (or an atlas does not match the given weights)."""


class OutputFolderError(EmbSpaceError, FileExistsError):
    """An output folder cannot be written: it exists and is not a replaceable atlas."""


class OptionError(EmbSpaceError, TypeError):
    """An option a function does not take, a missing required one, or one of the wrong type.

    For example ``interpret("ff_value", model, layr=3)``: the message lists the valid options and
    suggests the closest spelling; or ``neurons=[1.5]`` (indices must be ints).
    """


class SelectionError(EmbSpaceError, IndexError):
    """An index (layer, head, neuron, component, token id) outside the range the model has."""


class MissingDependencyError(EmbSpaceError, ImportError):
    """An optional package a feature needs is not installed (the message names the extra)."""
