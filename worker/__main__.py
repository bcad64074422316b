import sys

from ajq.worker.cli import main

sys.exit(main())
