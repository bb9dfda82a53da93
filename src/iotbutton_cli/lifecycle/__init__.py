"""Tearing down what iotbutton made, in reverse order, and finding what a lost registry forgot."""
