"""What every layer uses at run time: the clock, logging, telemetry hooks."""
