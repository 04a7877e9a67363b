"""Data acquisition: readout processes, shared-memory rings, FITS writer processes."""
