"""The old name of `gozen.devices.simulators.gpsd`, kept until supervise/entries.py imports the new one."""

from gozen.devices.simulators.gpsd import run_gpsd_sim

__all__ = ["run_gpsd_sim"]
