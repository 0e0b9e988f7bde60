"""``python -m syncserver.admin`` is ``syncserver-admin``."""

import sys

from syncserver.admin.cli import main

sys.exit(main())
