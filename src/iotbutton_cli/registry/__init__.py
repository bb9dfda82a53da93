"""The per-user record of what iotbutton made: the store, its shape, the kinds of record."""
