"""iotbutton: wire an AWS IoT button to phone calls and SMS from the command line."""

__version__ = "0.1.0"
