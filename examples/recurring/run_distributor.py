import settings
import tasks

import zmqpipeline

if __name__ == "__main__":
    zmqpipeline.Distributor.register_task(tasks.PollTask)
    dist = zmqpipeline.Distributor(
        collector_endpoint=settings.COLLECTOR_ENDPOINT,
        collector_ack_endpoint=settings.COLLECTOR_ACK_ENDPOINT,
        control_endpoint=settings.CONTROL_ENDPOINT,
    )
    dist.run()
    print("finished")
