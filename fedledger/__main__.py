import sys

from fedledger.cli.main import main

sys.exit(main())
