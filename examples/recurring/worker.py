import os

import settings

import zmqpipeline


class PollWorker(zmqpipeline.SingleThreadedWorker):
    task_type = zmqpipeline.TaskType(settings.TASK_TYPE_POLL)
    endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)
    collector_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)

    def handle_execution(self, data, *args, **kwargs):
        path = os.path.join(settings.app_path, data["data"]["path"])
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise zmqpipeline.StopJob("%s is gone: not polling it again" % path)
        result = {"job": data["job"], "size": info.st_size, "mtime": info.st_mtime}
        if info.st_size == 0:
            return zmqpipeline.Backoff(30, result)  # nothing there yet: look later
        return result


if __name__ == "__main__":
    PollWorker().run()
