"""`/docs`: Swagger UI served from the package, under a Content-Security-Policy."""

from allegro_link.apidocs.routes import docs_router

__all__ = ["docs_router"]
