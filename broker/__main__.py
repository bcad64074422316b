import sys

from ajq.broker.cli import main

sys.exit(main())
