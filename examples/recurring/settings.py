##################################################
# PUT ZMQPIPELINE LIBRARY ON SYSTEM PATH
# (so the example runs from a clone, without installing the package)
##################################################
import os
import sys

app_path = os.path.dirname(os.path.abspath(__file__))
root_path = os.path.join(app_path, "..", "..")
if root_path not in sys.path:
    sys.path.insert(0, root_path)

import zmqpipeline

##################################################
# APP SETTINGS
##################################################

# A scheduled task: a poller that looks at a few local files, each on its own rule.
# RRULEs need python-dateutil: pip install 'zmqpipeline[schedule]'.
TASK_TYPE_POLL = "POLL"
zmqpipeline.TaskType.register_type(TASK_TYPE_POLL)

# How long the example runs: every rule has a COUNT that ends it by then, and the task
# ends once no job is due any more (Schedule(end_when_idle=True)).
RUN_SECONDS = int(os.environ.get("RECURRING_RUN_SECONDS", "60"))

COLLECTOR_ENDPOINT = "tcp://localhost:5558"
COLLECTOR_ACK_ENDPOINT = "tcp://localhost:5551"
WORKER_ENDPOINT = "ipc://poll.ipc"
CONTROL_ENDPOINT = "ipc://control.ipc"  # zmqpipeline schedule list|statuses|tell ENDPOINT
