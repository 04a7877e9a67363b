"""The simulated observatory's devices: product code, run by `gozen up` when monitors.simulator is on.

`camera` is the simulated camera the readouts drive in-process; `alpaca` serves the simulated
telescope, weather station and safety monitor over ASCOM Alpaca (`sim:alpaca`) and `gpsd` the
simulated GPS receiver over gpsd's protocol (`sim:gpsd`), so the monitors and the queue talk
to them exactly as to real devices.
"""
