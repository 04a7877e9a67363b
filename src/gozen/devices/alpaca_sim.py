"""The old name of `gozen.devices.simulators.alpaca`, kept until supervise/entries.py imports the new one."""

from gozen.devices.simulators.alpaca import run_alpaca_sim

__all__ = ["run_alpaca_sim"]
