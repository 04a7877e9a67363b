"""Monitors: sensors and disks -> the status board, and events when something crosses a line."""
