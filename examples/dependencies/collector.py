import settings
import zmqpipeline
import time


class MyCollector(zmqpipeline.Collector):
    """A stopwatch per task type: shows SECOND starting only once FIRST is all collected."""

    endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
    ack_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ACK_ENDPOINT)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.counts = {}        # task type -> items collected
        self.first_seen = {}    # task type -> time of its first result
        self.last_seen = {}     # task type -> time of its last result

    def handle_collection(self, data, task_type, msgtype):
        now = time.time()
        self.counts[task_type] = self.counts.get(task_type, 0) + 1
        self.first_seen.setdefault(task_type, now)
        self.last_seen[task_type] = now

    def handle_finished(self, data, task_type):
        if data['aborted'] or data.get('ended_by', 'completed') != 'completed':
            print('the run ended early (%s): these numbers are partial'
                  % data.get('ended_by', 'stopped'))
        for tt in sorted(self.counts, key=self.first_seen.get):
            print('%s: collected %d items in %.1f milliseconds' % (
                tt, self.counts[tt], (self.last_seen[tt] - self.first_seen[tt]) * 1000))
        first, second = settings.TASK_TYPE_FIRST, settings.TASK_TYPE_SECOND
        if first in self.last_seen and second in self.first_seen:
            print('%s started %.1f milliseconds after the last %s result' % (
                second, (self.first_seen[second] - self.last_seen[first]) * 1000, first))


if __name__ == '__main__':
    collector = MyCollector()
    print('collector running')
    collector.run()

    print('finished')
