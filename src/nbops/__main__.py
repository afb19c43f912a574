import sys

from nbops.cli import main

sys.exit(main())
