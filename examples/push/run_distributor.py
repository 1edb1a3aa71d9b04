import settings
import zmqpipeline
import tasks

if __name__ == '__main__':
    zmqpipeline.Distributor.register_task(tasks.NumbersTask)
    dist = zmqpipeline.Distributor(
        collector_endpoint=settings.COLLECTOR_ENDPOINT,
        collector_ack_endpoint=settings.COLLECTOR_ACK_ENDPOINT,
        push_endpoint=settings.PUSH_ENDPOINT,
    )
    dist.run()
    print('finished')
