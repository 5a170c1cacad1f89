"""`python -m mosaic`: the same as the `mosaic` command."""

import sys

from mosaic.node.cli.main import main

sys.exit(main())
