"""``python -m mrl ...``: the same as the ``mrl`` command."""
from mrl.cli import main

if __name__ == "__main__":
    main()
