"""Data transfer: the catalog, copy agents, placement, the DAQ janitor."""
