"""The Typer front end: parse options, call services, render results. No boto3 here."""
