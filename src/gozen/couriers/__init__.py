"""Couriers: alert feeds read, and messages delivered to Slack and other services."""
