"""The pipeline every deployment example runs: DEPLOY_ITEMS items of DEPLOY_ITEM_S seconds.

One module holds the three roles, so each host runs the same file:

    zmqpipeline distributor app.py          # on the head node
    zmqpipeline collector app.py:Results    # on the head node
    zmqpipeline worker app.py:Sleeper       # on every worker host, as many as it has cores

Where the roles meet comes from the environment (the same value on every host):

    DEPLOY_HEAD          the head node's address (or a name every host resolves to it);
                         the distributor and the collector bind on it, workers connect
                         to it (default 127.0.0.1)
    DEPLOY_COLLECTOR     the collector's address, where it is not on the head node
                         (containers: its service name; default DEPLOY_HEAD)
    DEPLOY_DISTRIBUTOR_BIND, DEPLOY_COLLECTOR_BIND
                         set in that role's own environment only: the address it binds
                         instead (``*``: every interface, as in a container whose
                         service name is not its own address)
    DEPLOY_TASK_PORT     the distributor's task port (default 5555): workers -> head
    DEPLOY_RESULT_PORT   the collector's result port (default 5556): workers -> head
    DEPLOY_ACK_PORT      the collector's ACK port (default 5557): distributor -> collector
    DEPLOY_ITEMS         items in the run (default 1000)
    DEPLOY_ITEM_S        seconds each item sleeps (default 0.01)
    DEPLOY_RECORD        optional: a file where the collector writes one line per
                         handle_collection call (the item's number), for checking runs
    DEPLOY_EXECUTIONS    optional: a file where each worker writes one line per item it
                         executes (the item's number)

CURVE keys come from the ZMQPIPELINE_CURVE_* variables (see docs/security.md).
"""

import os
import socket
import sys
import time
from collections import Counter

import zmqpipeline

HEAD = os.environ.get("DEPLOY_HEAD", "127.0.0.1")
COLLECTOR = os.environ.get("DEPLOY_COLLECTOR", HEAD)
# A binding role may bind another address than the one the others connect to.
TASK_HOST = os.environ.get("DEPLOY_DISTRIBUTOR_BIND") or HEAD
RESULT_HOST = os.environ.get("DEPLOY_COLLECTOR_BIND") or COLLECTOR
TASK_PORT = int(os.environ.get("DEPLOY_TASK_PORT", "5555"))
RESULT_PORT = int(os.environ.get("DEPLOY_RESULT_PORT", "5556"))
ACK_PORT = int(os.environ.get("DEPLOY_ACK_PORT", "5557"))
ITEMS = int(os.environ.get("DEPLOY_ITEMS", "1000"))
ITEM_S = float(os.environ.get("DEPLOY_ITEM_S", "0.01"))

SLEEP = zmqpipeline.TaskType.register_type("SLEEP")
TASK_ENDPOINT = zmqpipeline.EndpointAddress(f"tcp://{TASK_HOST}:{TASK_PORT}")
RESULT_ENDPOINT = zmqpipeline.EndpointAddress(f"tcp://{RESULT_HOST}:{RESULT_PORT}")
ACK_ENDPOINT = zmqpipeline.EndpointAddress(f"tcp://{RESULT_HOST}:{ACK_PORT}")


class SleepItems(zmqpipeline.Task):
    """Hands out ITEMS items, each asking a worker to sleep ITEM_S seconds."""

    task_type = SLEEP
    endpoint = TASK_ENDPOINT
    handed_out = 0

    def handle(self, data, address, msgtype):
        number = self.handed_out
        self.handed_out += 1
        if self.handed_out >= ITEMS:
            self.is_complete = True
        return {"n": number, "sleep": ITEM_S}


class Sleeper(zmqpipeline.SingleThreadedWorker):
    """Sleeps as told; says which host and process did it."""

    task_type = SLEEP
    endpoint = TASK_ENDPOINT
    collector_endpoint = RESULT_ENDPOINT

    def init_worker(self):
        path = os.environ.get("DEPLOY_EXECUTIONS")
        self.executions = open(path, "a", buffering=1) if path else None

    def handle_execution(self, data, *args, **kwargs):
        time.sleep(data["sleep"])
        if self.executions is not None:
            self.executions.write(f"{data['n']}\n")
        return {"n": data["n"], "host": socket.gethostname(), "pid": os.getpid()}


class Results(zmqpipeline.Collector):
    """Counts every result and prints the run's report when it ends."""

    endpoint = RESULT_ENDPOINT
    ack_endpoint = ACK_ENDPOINT

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.numbers = Counter()
        self.by_worker = Counter()
        self.started = None
        path = os.environ.get("DEPLOY_RECORD")
        self.record = open(path, "a", buffering=1) if path else None

    def handle_collection(self, data, task_type, msgtype):
        if self.started is None:
            self.started = time.monotonic()
        self.numbers[data["n"]] += 1
        self.by_worker[f"{data['host']}:{data['pid']}"] += 1
        if self.record is not None:
            self.record.write(f"{data['n']}\n")

    def handle_finished(self, data, task_type):
        wall = time.monotonic() - (self.started or time.monotonic())
        twice = sum(1 for count in self.numbers.values() if count > 1)
        print(
            f"report: collected {sum(self.numbers.values())} of {ITEMS} items "
            f"({len(self.numbers)} distinct, {twice} twice) in {wall:.2f} s "
            f"by {len(self.by_worker)} workers",
            flush=True,
        )
        for worker, count in sorted(self.by_worker.items()):
            print(f"report:   {worker:<40} {count:>7}", flush=True)
        if self.record is not None:
            self.record.close()
        sys.stdout.flush()
