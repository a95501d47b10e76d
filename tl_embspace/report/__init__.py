"""Pure renderers of an atlas into files a person reads (no model code imported here).

``site``: the HTML atlas (``index.html`` and ``html/``); add a first-page section with
``site.section``. ``attached``: results kept outside the atlas (comparison, alignment) that
sections show. ``sections``: the hygiene, comparison and alignment sections.
"""

from . import sections as _sections  # noqa: F401  (registers its sections, after site's own)
from .attached import Attached
from .site import SECTIONS, Section, rerender, section, write_site

__all__ = ["SECTIONS", "Attached", "Section", "rerender", "section", "write_site"]
