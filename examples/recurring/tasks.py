import settings

import zmqpipeline


def every(seconds):
    """An RRULE: every `seconds`, as many times as fit in the run."""
    return "FREQ=SECONDLY;INTERVAL=%d;COUNT=%d" % (seconds, max(1, settings.RUN_SECONDS // seconds))


class PollTask(zmqpipeline.ScheduledTask):
    """Each job names a file; the worker looks at it when the job is due."""

    task_type = zmqpipeline.TaskType(settings.TASK_TYPE_POLL)
    endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)
    schedule = zmqpipeline.Schedule(
        jobs={
            "settings": (every(2), {"path": "settings.py"}),
            "tasks": (every(5), {"path": "tasks.py"}),
            "hostname": (every(10), {"path": "/etc/hostname"}),
            "startup": ("NOW", {"path": "README.md"}),  # once, at the start
            "missing": (every(3), {"path": "no-such-file.txt"}),  # StopJob: never again
        },
        timeout_s=10,
        end_when_idle=True,
    )
