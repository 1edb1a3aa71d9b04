"""What starting a process costs: ``import zmqpipeline`` (every process of a run does it)
and the command line import only what they use. Each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import zmqpipeline

# Imported only by what uses them: the Executor, Service mode, the result cache, recurring
# jobs' public names (the distributor imports the parts it runs), the dashboard's server,
# asyncio (pyzmq's socket monitor and ZAP thread import it), logging.config.
NOT_AT_START = (
    "asyncio",
    "http.server",
    "logging.config",
    "zmqpipeline.executor",
    "zmqpipeline.service.service",
)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(out.split())


def test_import_zmqpipeline_leaves_out_what_a_run_does_not_use():
    loaded = _modules_after("import zmqpipeline")
    assert loaded.isdisjoint(NOT_AT_START), sorted(loaded & set(NOT_AT_START))


def test_the_command_line_imports_asyncio_and_http_server_only_for_the_commands_using_them():
    loaded = _modules_after(
        "from zmqpipeline.cli.main import main\n"
        "try:\n    main(['list', 'examples/singlethread'])\nexcept SystemExit:\n    pass"
    )
    assert loaded.isdisjoint(("asyncio", "http.server")), sorted(
        loaded & {"asyncio", "http.server"}
    )


#: What a plain run (no cache, no schedule, no CURVE) imports of none of them: the
#: command's parser alone, the cache's and the schedule's null parts, no key tools.
NOT_IN_A_RUN = (
    "zmqpipeline.cache.book",
    "zmqpipeline.cache.store",
    "zmqpipeline.cache.key",
    "zmqpipeline.schedule.task",
    "zmqpipeline.schedule.store",
    "zmqpipeline.schedule.book",
    "zmqpipeline.schedule.rules",
    "zmqpipeline.service",
    "zmqpipeline.dashboard",
    "zmqpipeline.cli.service",
    "zmqpipeline.cli.check",
    "zmqpipeline.cli.slurm",
    "zmqpipeline.cli.schedule",
    "zmq.auth",
    "csv",
    "uuid",
)


def test_a_run_imports_no_part_it_does_not_use():
    """`zmqpipeline run` (the parent: it imports what every child has from the fork)."""
    loaded = _modules_after(
        "from zmqpipeline.cli.main import main\n"
        "assert main(['run', 'examples/singlethread', '--quiet']) == 0"
    )
    assert "zmqpipeline.distributor.distributor" in loaded  # a run's imports were seen
    assert sorted(m for m in loaded if m.startswith(NOT_IN_A_RUN)) == []


def test_every_public_name_resolves_and_is_listed():
    for name in zmqpipeline.__all__:
        assert getattr(zmqpipeline, name) is not None, name
    assert set(zmqpipeline.__all__) <= set(dir(zmqpipeline))
    assert zmqpipeline.Executor is zmqpipeline.executor.Executor  # the same object, kept


def test_an_unknown_name_is_an_attribute_error_naming_it():
    try:
        zmqpipeline.Nonexistent  # noqa: B018
    except AttributeError as exc:
        assert "Nonexistent" in str(exc)
    else:
        raise AssertionError("no AttributeError")
