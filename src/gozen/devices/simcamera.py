"""The old name of `gozen.devices.simulators.camera`, kept until tests/daq/test_pipeline.py imports the new one."""

from gozen.devices.simulators.camera import SimulatedCamera

__all__ = ["SimulatedCamera"]
