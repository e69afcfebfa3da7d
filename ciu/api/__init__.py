"""The prediction API of CIU Twin (FastAPI): build it with :func:`create_app`.

Importing this package is cheap: FastAPI is loaded when an app is built.
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """Build the API; see :func:`ciu.api.app.create_app`."""
    from ciu.api.app import create_app as build

    return build(*args, **kwargs)


__all__ = ["create_app"]
