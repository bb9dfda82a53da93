"""The library behind the CLI: plain functions over an AppContext, returning dataclasses."""
