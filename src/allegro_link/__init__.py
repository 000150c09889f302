"""allegro-link: OAuth broker for Allegro seller accounts."""

__version__ = "0.1.0"
