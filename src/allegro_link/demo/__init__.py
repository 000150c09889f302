"""The demo "Konta Allegro" panel: one static page that drives the public API (served when demo_enabled)."""

from allegro_link.demo.routes import router

__all__ = ["router"]
