"""gozen: the back-end of a high-cadence wide-field survey telescope."""

__version__ = "0.1.0"
