"""Counts the words of one file."""

import counting
import settings

import zmqpipeline


class CountWorker(zmqpipeline.SingleThreadedWorker):
    task_type = zmqpipeline.TaskType("COUNT")
    endpoint = zmqpipeline.EndpointAddress("ipc://count.ipc")
    collector_endpoint = zmqpipeline.EndpointAddress("ipc://results.ipc")

    def handle_execution(self, data, *args, **kwargs):
        if settings.FREQUENCIES:
            return {"counts": counting.word_frequencies(data["path"])}
        return {"words": counting.count_words(data["path"])}
