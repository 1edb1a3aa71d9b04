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

##################################################
# EXAMPLE LOGGING SETTINGS
# reference: https://docs.python.org/3/library/logging.config.html
##################################################
import zmqpipeline

zmqpipeline.configureLogging({
    'version': 1,
    'disable_existing_loggers': False,
    'handlers': {
        # console logger
        'console': {
            'level': 'DEBUG',
            'class': 'logging.StreamHandler',
            'formatter': 'simple'
        },
        # a file handler: output.log in the directory the role is started from
        # (delay: the file is only created once something is logged)
        'file': {
            'level': 'DEBUG',
            'class': 'logging.FileHandler',
            'filename': 'output.log',
            'formatter': 'verbose',
            'delay': True,
        },
    },
    # propagate: False -- these handlers already print everything; propagating would print
    # each line a second time through a root handler (e.g. the one `zmqpipeline run` sets up)
    'loggers': {
        'zmqpipeline.distributor': {
            'handlers': ['console', 'file'],
            'level': 'DEBUG',
            'propagate': False,
        },
        'zmqpipeline.task': {
            'handlers': ['console', 'file'],
            'level': 'DEBUG',
            'propagate': False,
        },
        'zmqpipeline.collector': {
            'handlers': ['console', 'file'],
            'level': 'DEBUG',
            'propagate': False,
        },
        'zmqpipeline.worker': {
            'handlers': ['console', 'file'],
            'level': 'DEBUG',
            'propagate': False,
        },
    },
    'formatters': {
        'verbose': {
            'format': '%(levelname)s %(asctime)s %(module)s %(process)d %(thread)d %(message)s'
        },
        'simple': {
            'format': '%(levelname)s %(message)s'
        },
    },
})

##################################################
# APP SETTINGS
##################################################

TASK_TYPE_CALC = 'CALC'
zmqpipeline.TaskType.register_type(TASK_TYPE_CALC)

COLLECTOR_ENDPOINT = 'tcp://localhost:5558'
COLLECTOR_ACK_ENDPOINT = 'tcp://localhost:5551'
WORKER_ENDPOINT = 'ipc://worker.ipc'
