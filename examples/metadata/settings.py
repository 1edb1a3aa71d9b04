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

TASK_TYPE_MY_TASK = 'MY_TASK'
zmqpipeline.TaskType.register_type(TASK_TYPE_MY_TASK)

COLLECTOR_ENDPOINT = 'tcp://localhost:5558'
COLLECTOR_ACK_ENDPOINT = 'tcp://localhost:5551'
WORKER_ENDPOINT = 'ipc://worker.ipc'
METADATA_ENDPOINT = 'tcp://localhost:5560'
