"""Built-in interpreters, registered by name (see ``interpreters.names()``).

Importing this package registers: ``ff_key``, ``ff_gate``, ``ff_value``; sub-heads ``q``, ``k``,
``v``, ``o``; ``qk_pairs``, ``ov_pairs``; ``svd_ov``, ``svd_qk``, ``svd_in``, ``svd_out``;
``embedding``, ``direction``, ``bias``.
"""

from . import attention, directions, mlp, svd  # noqa: F401  (registration side effects)
from ._base import interpret, interpreters, project_pairs, project_vectors
from .svd import low_rank_svd

__all__ = ["interpret", "interpreters", "project_pairs", "project_vectors", "low_rank_svd"]
