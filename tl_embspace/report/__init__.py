"""Pure renderers of results into self-contained files (no model code imported here)."""

from .html import render_job

__all__ = ["render_job"]
