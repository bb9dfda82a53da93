"""What iotbutton keeps on this machine: the registry (store, shape, kinds, record types) and the
key files its certificate records name, both in the user's private folders."""
