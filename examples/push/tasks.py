import settings
import zmqpipeline


class NumbersTask(zmqpipeline.Task):
    """No handle(): every item is pushed in; the task ends once closed and collected."""
    task_type = zmqpipeline.TaskType(settings.TASK_TYPE_NUMBERS)
    endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)
    open_ended = True
