import sys

from inferlog.cli import main

sys.exit(main())
