"""The one SQL database: tables, engine and migrations."""
