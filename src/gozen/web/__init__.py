"""The one web app: server-rendered pages, each with a JSON twin under /api."""
