import sys

from prism_science.cli.main import main

sys.exit(main())
