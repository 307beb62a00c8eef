"""npddpm's asv suite (see ``benchmarks/README.md``, section "asv suite").

Run from ``benchmarks/`` with ``asv run --python=same --quick``. Importing these modules
imports neither asv nor Numba: the kernels are imported, and compiled or loaded from Numba's
on-disk cache, in each benchmark's ``setup``. The one exception is asv's fork server, which
imports the suite once and forks a process for every benchmark: there the package imports
Numba and the CPU kernels up front (:func:`.common.preload`), so that no forked process
repeats those ~2 s of imports.
"""

import sys

# asv's fork server (``benchmark.py run_server ...``): imported once, forked for every run.
if "asv_runner.server" in sys.modules and sys.argv[1:2] == ["run_server"]:
    from . import common

    common.preload()
