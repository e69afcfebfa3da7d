"""The dashboard: a Dash multi-page app over the twin, served with its JavaScript, offline.

>>> from ciu.viz.app import create_dashboard        # doctest: +SKIP
>>> create_dashboard().run(port=8050)           # doctest: +SKIP

deck.gl, maplibre and Cesium come from the npm packages installed at set-up
(``viz/js/node_modules``) and are served by the dashboard's own Flask server
under ``/vendor/``; Dash serves its own scripts locally. No page loads anything
from another machine.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

import dash
from dash import Dash, dcc, html
from flask import abort, send_file

from ciu.errors import ConfigError
from ciu.viz.data import DashboardData
from ciu.viz.ids import Id
from ciu.viz.settings import DashboardSettings

if TYPE_CHECKING:
    from flask import Flask

    from ciu.twin import Twin

#: files served under /vendor/: URL path → path inside node_modules
VENDOR_FILES = {
    "deck.gl/dist.min.js": "deck.gl/dist.min.js",
    "maplibre-gl/maplibre-gl.js": "maplibre-gl/dist/maplibre-gl.js",
    "maplibre-gl/maplibre-gl.css": "maplibre-gl/dist/maplibre-gl.css",
}
#: a directory served whole under /vendor/cesium/ (the Cesium viewer of the exports)
CESIUM_DIR = "cesium/Build/Cesium"
ASSETS = Path(__file__).resolve().parent / "assets"


def check_js(js_dir: Path) -> None:
    """Raise :class:`ConfigError` when the npm packages the pages need are not installed."""
    missing = [rel for rel in VENDOR_FILES.values() if not (js_dir / rel).is_file()]
    if missing:
        raise ConfigError(f"JavaScript packages missing in {js_dir} ({missing[0]}); run `make setup`"
                          " (npm ci in viz/js)")


def add_vendor_route(server: Flask, js_dir: Path) -> None:
    """Serve the allowed files of ``js_dir`` (and the Cesium build) under ``/vendor/``."""
    root = js_dir.resolve()
    cesium = (root / CESIUM_DIR).resolve()

    def vendor(name: str):
        if name in VENDOR_FILES:
            path = root / VENDOR_FILES[name]
        elif name.startswith("cesium/"):
            path = (cesium / name.removeprefix("cesium/")).resolve()
            if not path.is_relative_to(cesium):
                abort(404)
        else:
            abort(404)
        if not path.is_file():
            abort(404)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return send_file(path, mimetype=kind, max_age=3600)

    server.add_url_rule("/vendor/<path:name>", "vendor", vendor)


def shell(app: Dash, data: DashboardData) -> html.Div:
    """The frame around every page: title, page links, the refresh clock."""
    links = [dcc.Link(page["name"], href=page["relative_path"], className="nav-link")
             for page in dash.page_registry.values() if page["module"].startswith("ciu.viz.pages.")]
    return html.Div(className="app", children=[
        html.Header(className="header", children=[html.Span("CIU Twin", className="brand"), *links,
                                                  html.Span(f"role: {data.role().name}", className="role")]),
        dash.page_container,
        dcc.Interval(id=Id.REFRESH, interval=int(data.settings.refresh_s * 1000)),
    ])


def create_dashboard(settings: DashboardSettings | None = None, *, twin: Twin | None = None) -> Dash:
    """Build the dashboard app.

    Parameters
    ----------
    settings
        Dashboard settings; read from ``CIU_DASHBOARD_*`` when ``None``.
    twin
        The twin to show (the app owns and closes it); opened from ``CIU_*`` when ``None``.
    """
    settings = settings or DashboardSettings()
    check_js(settings.js_dir)
    if twin is None:
        from ciu.twin import Twin

        twin = Twin.connect()
    data = DashboardData(twin, settings)
    data.role()  # an unknown key fails here, not on the first page view
    app = Dash(
        "ciu.viz.app", use_pages=True, pages_folder="", assets_folder=str(ASSETS), serve_locally=True,
        title="CIU Twin", update_title=None, suppress_callback_exceptions=True,
        external_scripts=["/vendor/maplibre-gl/maplibre-gl.js", "/vendor/deck.gl/dist.min.js"],
        external_stylesheets=["/vendor/maplibre-gl/maplibre-gl.css"],
    )
    add_vendor_route(app.server, settings.js_dir)
    from ciu.viz.pages import operations, planner

    operations.register(app, data)
    planner.register(app, data)
    app.layout = shell(app, data)
    app.server.config["ciu_data"] = data
    return app
