"""Reports of a stored study: a self-contained HTML page (:func:`write_report`, plotly).

The small per-trial SVG pictures it embeds are drawn during trials by :mod:`tuner.nn.pictures`.
"""

from tuner.views.report._build import build_report, write_report

__all__ = ["build_report", "write_report"]
