"""`python -m bench.peers`: see bench/peers/cli.py."""

import sys

if __name__ == "__main__":  # client processes are spawned: they import this module as __mp_main__
    from bench.peers.cli import main

    sys.exit(main())
