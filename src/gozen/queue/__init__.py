"""Queue observation: recipes, their store, the scheduler and queue:server."""
