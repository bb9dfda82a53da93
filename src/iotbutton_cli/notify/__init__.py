"""The deploy side of the notifier.

Messaging config and secret, the bundle, plan and apply, the topic rules, and the operations on the
deployed function. The Lambda's own code is :mod:`iotbutton_cli.notifier_lambda`.
"""
