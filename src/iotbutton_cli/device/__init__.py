"""The device side of a button: a simulated one today."""
