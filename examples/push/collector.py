import settings
import zmqpipeline


class SumCollector(zmqpipeline.Collector):
    endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
    ack_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ACK_ENDPOINT)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.count = 0
        self.total = 0

    def handle_collection(self, data, task_type, msgtype):
        self.count += 1
        self.total += data['square']

    def handle_finished(self, data, task_type):
        if data['aborted'] or data.get('ended_by', 'completed') != 'completed':
            print('the run ended early (%s): these numbers are partial'
                  % data.get('ended_by', 'stopped'))
        print('%d pushed numbers squared, sum of squares %d' % (self.count, self.total))


if __name__ == '__main__':
    SumCollector().run()
