import settings
import zmqpipeline


class MyCollector(zmqpipeline.Collector):
    endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
    ack_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ACK_ENDPOINT)

    def handle_collection(self, data, task_type, msgtype):
        pass

    def handle_finished(self, data, task_type):
        # the distributor forwards the metadata to the collector too
        print('MyCollector: metadata is %s' % self.metadata)


if __name__ == '__main__':
    collector = MyCollector()
    print('collector running')
    collector.run()

    print('finished')
