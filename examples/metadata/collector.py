import settings
import zmqpipeline


class MyCollector(zmqpipeline.Collector):
    endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
    ack_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ACK_ENDPOINT)

    def handle_collection(self, data, task_type, msgtype):
        pass

    def handle_finished(self, data, task_type):
        if data['aborted'] or data.get('ended_by', 'completed') != 'completed':
            print('the run ended early (%s): these numbers are partial'
                  % data.get('ended_by', 'stopped'))
        # the distributor forwards the metadata to the collector too
        print('MyCollector: metadata is %s' % self.metadata)


if __name__ == '__main__':
    collector = MyCollector()
    print('collector running')
    collector.run()

    print('finished')
