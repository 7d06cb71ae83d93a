"""geoaudit: does rewriting a page for AI answer engines (GEO / C-SEO) make it more visible?

The library behind the ``geoaudit`` command. Stages, in the one direction data flows:

    crawl -> documents -> strategies/rewrite -> engine (+ metrics) -> simulate -> stats -> report

Import the stage you need, e.g. ``from geoaudit.engine import answer`` or
``from geoaudit.simulate import simulate``; this package itself imports nothing heavy.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("geoaudit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
