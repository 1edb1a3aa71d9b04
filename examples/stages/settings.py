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

# Three stages: URLS hands out addresses; FETCH ("downloads": a sleep) is fed by each
# collected URLS result as it arrives; PARSE (CPU work) is fed by each FETCH result.
TASK_TYPE_URLS = 'URLS'
TASK_TYPE_FETCH = 'FETCH'
TASK_TYPE_PARSE = 'PARSE'
for name in (TASK_TYPE_URLS, TASK_TYPE_FETCH, TASK_TYPE_PARSE):
    zmqpipeline.TaskType.register_type(name)

N_URLS = 200
FETCH_SECONDS = 0.01  # one "download"
LINKS_PER_PAGE = 3    # fan-out: each fetched page yields this many links to parse

COLLECTOR_ENDPOINT = 'tcp://localhost:5558'
COLLECTOR_ACK_ENDPOINT = 'tcp://localhost:5551'
URLS_ENDPOINT = 'ipc://urls.ipc'
FETCH_ENDPOINT = 'ipc://fetch.ipc'
PARSE_ENDPOINT = 'ipc://parse.ipc'
