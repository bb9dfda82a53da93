"""The notifier Lambda's own source: runs alone inside AWS Lambda, imports nothing else of ours.

Zipped whole as ``notifier_lambda/`` (handler ``notifier_lambda.handler.lambda_handler``); its
modules import each other relatively, so the same code runs inside the CLI and inside Lambda.
:mod:`.contract` is what the CLI side shares with it. This file imports nothing: importing the
contract from the CLI costs no more than the contract.
"""
