import sys

from prime.cli.main import main

sys.exit(main())
