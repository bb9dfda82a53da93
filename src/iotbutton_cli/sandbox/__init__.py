"""The offline sandbox: local stand-ins for the services the tool talks to."""
