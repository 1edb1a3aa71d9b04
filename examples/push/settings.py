##################################################
# PUT ZMQPIPELINE LIBRARY ON SYSTEM PATH
# (so the example runs from a clone, without installing the package)
##################################################
import os, sys

app_path = os.path.dirname(os.path.abspath(__file__))
root_path = os.path.join(app_path, '..', '..')
if root_path not in sys.path:
    sys.path.insert(0, root_path)

import zmqpipeline

##################################################
# APP SETTINGS
##################################################

# An open-ended task: no size known in advance, its items are pushed in from outside
# (`zmqpipeline push ENDPOINT NUMBERS JSON`) until someone closes it.
TASK_TYPE_NUMBERS = 'NUMBERS'
zmqpipeline.TaskType.register_type(TASK_TYPE_NUMBERS)

COLLECTOR_ENDPOINT = 'tcp://localhost:5558'
COLLECTOR_ACK_ENDPOINT = 'tcp://localhost:5551'
WORKER_ENDPOINT = 'ipc://numbers.ipc'
PUSH_ENDPOINT = 'ipc://push.ipc'  # where the distributor takes pushed items
