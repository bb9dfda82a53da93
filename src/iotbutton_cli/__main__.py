"""Allow ``python -m iotbutton_cli``."""

from iotbutton_cli.cli.app import main

if __name__ == "__main__":
    main()
