"""Push numbers into the running pipeline from Python, then close the stream:

    python feed.py [PUSH_ENDPOINT] [COUNT]    (default: ipc://push.ipc, 100)
"""
import sys

import settings
import zmqpipeline

if __name__ == '__main__':
    endpoint = sys.argv[1] if len(sys.argv) > 1 else settings.PUSH_ENDPOINT
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    pusher = zmqpipeline.Pusher(endpoint)
    pusher.push_many(settings.TASK_TYPE_NUMBERS, [{'n': n} for n in range(1, count + 1)])
    pusher.close(settings.TASK_TYPE_NUMBERS)
    print('pushed %d numbers and closed the stream' % count)
