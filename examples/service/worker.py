import os

import settings
import zmqpipeline


class UpperWorker(zmqpipeline.ServiceWorker):
    task_type = zmqpipeline.TaskType(settings.TASK_TYPE_UPPER)
    endpoint = zmqpipeline.EndpointAddress(settings.BACKEND_ENDPOINT)

    def handle_message(self, data, task_type, msgtype):
        # a KeyError here (no 'message') reaches the client as an error it raises
        return {
            'message': data['message'].upper(),
            'worker': os.getpid(),
        }


if __name__ == '__main__':
    worker = UpperWorker()

    print('running worker')
    worker.run()

    print('finished - answered %d requests' % worker.requests_handled)
