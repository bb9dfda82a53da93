"""Buttons in AWS IoT.

Things, certificates and their keys, the IoT policies, serials, the endpoint, and the marks by which
iotbutton knows a resource is its own.
"""
