##################################################
# PUT ZMQPIPELINE LIBRARY ON SYSTEM PATH
# (so the example runs from a clone, without installing the package)
##################################################
import os, sys

app_path = os.path.dirname(os.path.abspath(__file__))
examples_path = os.path.join(app_path, '..')
root_path = os.path.join(examples_path, '..')

if root_path not in sys.path:
    sys.path.insert(0, root_path)

import zmqpipeline

##################################################
# APP SETTINGS
##################################################

TASK_TYPE_FIRST = 'FIRST'
TASK_TYPE_SECOND = 'SECOND'
zmqpipeline.TaskType.register_type(TASK_TYPE_FIRST)
zmqpipeline.TaskType.register_type(TASK_TYPE_SECOND)

COLLECTOR_ENDPOINT = 'tcp://localhost:5558'
COLLECTOR_ACK_ENDPOINT = 'tcp://localhost:5551'
FIRST_WORKER_ENDPOINT = 'ipc://first_worker.ipc'
SECOND_WORKER_ENDPOINT = 'ipc://second_worker.ipc'
