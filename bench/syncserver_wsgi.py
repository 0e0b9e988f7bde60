"""syncserver as a WSGI module for gunicorn: the PasteDeploy app of ``$SYNCSERVER_BENCH_INI``.

``bench/run.py`` points ``SYNCSERVER_BENCH_INI`` at an ini it generates
(``use = config:bench.ini`` plus the temporary database); by default this is
``bench/bench.ini``.
"""

import os

from paste.deploy import loadapp

_HERE = os.path.dirname(os.path.abspath(__file__))
_INI = os.path.abspath(os.environ.get("SYNCSERVER_BENCH_INI") or os.path.join(_HERE, "bench.ini"))

application = loadapp("config:" + _INI)
