"""Merges the counts; writes the files and words seen at the end."""

import json
from collections import Counter

import settings

import zmqpipeline


class CountCollector(zmqpipeline.Collector):
    endpoint = zmqpipeline.EndpointAddress("ipc://results.ipc")
    ack_endpoint = zmqpipeline.EndpointAddress("ipc://acks.ipc")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts = Counter()
        self.words = 0
        self.files = 0

    def handle_collection(self, data, task_type, msgtype):
        if "counts" in data:
            self.counts.update(data["counts"])
        else:
            self.words += data["words"]
        self.files += 1

    def handle_finished(self, data, task_type):
        with open(settings.OUT, "w") as f:
            json.dump(
                {
                    "files": self.files,
                    "words": self.words + sum(self.counts.values()),
                },
                f,
            )
