"""``python -m sparkml_template.runtime.spool replay <dir>``: send a run's spool."""

import sys

from sparkml_template.runtime.spool import main

sys.exit(main())
