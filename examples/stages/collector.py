import time

import settings
import zmqpipeline


class StageCollector(zmqpipeline.Collector):
    """Counts each stage's results and when they came: the stages overlap in time."""

    endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
    ack_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ACK_ENDPOINT)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.counts = {}
        self.first = {}
        self.last = {}

    def handle_collection(self, data, task_type, msgtype):
        now = time.time()
        self.counts[task_type] = self.counts.get(task_type, 0) + 1
        self.first.setdefault(task_type, now)
        self.last[task_type] = now

    def handle_finished(self, data, task_type):
        if data['aborted'] or data.get('ended_by', 'completed') != 'completed':
            print('the run ended early (%s): these numbers are partial'
                  % data.get('ended_by', 'stopped'))
        start = min(self.first.values()) if self.first else 0
        for tt in sorted(self.counts, key=self.first.get):
            print('%-6s %4d results, from %.2f s to %.2f s' % (
                tt, self.counts[tt], self.first[tt] - start, self.last[tt] - start))
        print('URLS: %d (not passed to the collector: collect_results = False)'
              % data['collected'].get(settings.TASK_TYPE_URLS, 0))


if __name__ == '__main__':
    StageCollector().run()
