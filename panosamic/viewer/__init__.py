"""The 360-degree viewer of a ``panosamic segment`` run: one page that opens from ``file://``.

:func:`~.page.write_viewer` writes it into ``OUT/viewer/``. The page's code is
``js/src/main.js``; ``js/`` pins Photo Sphere Viewer and three.js (npm) and
bundles them with it into ``static/viewer.js`` (``npm ci && npm run build`` in
``js/``); ``static/`` is what the package ships.
"""

from .page import ViewerOptions, ViewerPage, write_viewer

__all__ = ["ViewerOptions", "ViewerPage", "write_viewer"]
