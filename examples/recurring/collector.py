import settings

import zmqpipeline


class PollCollector(zmqpipeline.Collector):
    endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
    ack_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ACK_ENDPOINT)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = {}  # job -> (size, mtime) last seen
        self.polls = {}  # job -> how many times it was polled

    def handle_collection(self, data, task_type, msgtype):
        job = data["job"]
        self.polls[job] = self.polls.get(job, 0) + 1
        now = (data["size"], data["mtime"])
        if self.seen.get(job) not in (None, now):
            print("%s changed: %d bytes" % (job, data["size"]))
        self.seen[job] = now

    def handle_finished(self, data, task_type):
        for job in sorted(self.polls):
            print("%s: polled %d times" % (job, self.polls[job]))


if __name__ == "__main__":
    PollCollector().run()
