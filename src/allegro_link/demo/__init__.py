"""The demo "Konta Allegro" panel: one static page that drives the public API (served when demo_enabled)."""

from allegro_link.demo.routes import demo_router

__all__ = ["demo_router"]
