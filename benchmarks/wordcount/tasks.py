"""One item per file."""

import counting
import settings

import zmqpipeline


class CountTask(zmqpipeline.Task):
    task_type = zmqpipeline.TaskType("COUNT")
    endpoint = zmqpipeline.EndpointAddress("ipc://count.ipc")
    dependencies = ()

    def items(self):
        return [{"path": path} for path in counting.files(settings.ROOT)]
