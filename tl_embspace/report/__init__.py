"""Pure renderers of an atlas into files a person reads (no model code imported here).

``site``: the HTML atlas (``index.html`` and ``html/``); add a first-page section with
``site.section``.
"""

from .site import SECTIONS, Section, rerender, section, write_site

__all__ = ["SECTIONS", "Section", "rerender", "section", "write_site"]
