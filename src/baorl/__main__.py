import sys

from baorl.cli.main import main

sys.exit(main())
