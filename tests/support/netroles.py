"""Run one role of a test pipeline in its own process, with ``tests/`` on ``PYTHONPATH``:
``python tests/support/netroles.py ROLE CONFIG``.

Used by the multi-host tests, which start each role inside a network namespace. CONFIG is
a JSON file with the endpoints (``worker``, ``collector``, ``ack``), ``n`` items of
``delay`` seconds, where the collector writes ``results`` and the distributor ``report``,
and ``progress_at``: the collector prints ``PROGRESS`` once it has that many items.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

from support.pipelines import make_collector, make_task, make_worker, run_distributor


class _Announce:
    def set(self) -> None:
        print("PROGRESS", flush=True)


def main(role: str, config_path: str) -> None:
    with open(config_path) as source:
        config = SimpleNamespace(**json.load(source))
    task = make_task(config.worker, config.n, delay=config.delay)
    if role == "distributor":
        run_distributor(config, [task])
    elif role == "collector":
        make_collector(config, progress=_Announce(), progress_after=config.progress_at)().run()
    else:
        make_worker(config.worker, config.collector)().run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
