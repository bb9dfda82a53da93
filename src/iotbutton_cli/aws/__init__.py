"""boto3 plumbing that knows nothing of buttons.

Error translation, absent-is-fine calls, retries, rate limits, tags, bulk concurrency, and AWS IoT's
topic and SQL syntax.
"""
