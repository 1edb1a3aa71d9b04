import settings
import zmqpipeline


class SquareWorker(zmqpipeline.SingleThreadedWorker):
    task_type = zmqpipeline.TaskType(settings.TASK_TYPE_NUMBERS)
    endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)
    collector_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)

    def handle_execution(self, data, *args, **kwargs):
        return {'n': data['n'], 'square': data['n'] ** 2}


if __name__ == '__main__':
    SquareWorker().run()
