"""The dashboard's pages: one module each, with ``layout`` and ``register``."""
