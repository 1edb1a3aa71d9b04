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
# APP SETTINGS
##################################################
import zmqpipeline

TASK_TYPE_UPPER = 'UPPER'
zmqpipeline.TaskType.register_type(TASK_TYPE_UPPER)

# clients connect to the frontend, service workers to the backend
FRONTEND_ENDPOINT = 'tcp://localhost:15101'
BACKEND_ENDPOINT = 'tcp://localhost:15102'


zmqpipeline.configureLogging({
    'version': 1,
    'disable_existing_loggers': False,
    'handlers': {
        'console': {
            'level': 'INFO',
            'class': 'logging.StreamHandler',
            'formatter': 'simple'
        },
    },
    # propagate: False -- the console handler already prints these lines
    'loggers': {
        'zmqpipeline.service': {
            'handlers': ['console'],
            'level': 'INFO',
            'propagate': False,
        },
        'zmqpipeline.serviceworker': {
            'handlers': ['console'],
            'level': 'INFO',
            'propagate': False,
        },
        'zmqpipeline.serviceclient': {
            'handlers': ['console'],
            'level': 'INFO',
            'propagate': False,
        },
    },
    'formatters': {
        'simple': {
            'format': '%(levelname)s %(name)s %(message)s'
        },
    },
})
