"""The flow: driver, steps, machine, state, events, checkpoint store, PAdES check, evidence."""
