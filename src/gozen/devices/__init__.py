"""Hardware behind small interfaces, each with a simulator that behaves like the device."""
