import hashlib
import time

import settings
import zmqpipeline
from zmqpipeline import TaskType, EndpointAddress


class UrlWorker(zmqpipeline.SingleThreadedWorker):
    task_type = TaskType(settings.TASK_TYPE_URLS)
    endpoint = EndpointAddress(settings.URLS_ENDPOINT)
    collector_endpoint = EndpointAddress(settings.COLLECTOR_ENDPOINT)

    def handle_execution(self, data, *args, **kwargs):
        return {'url': data['url']}  # e.g. normalise it


class FetchWorker(zmqpipeline.SingleThreadedWorker):
    task_type = TaskType(settings.TASK_TYPE_FETCH)
    endpoint = EndpointAddress(settings.FETCH_ENDPOINT)
    collector_endpoint = EndpointAddress(settings.COLLECTOR_ENDPOINT)

    def handle_execution(self, data, *args, **kwargs):
        time.sleep(settings.FETCH_SECONDS)  # stands in for the download
        return {'url': data['url'], 'size': len(data['url']) * 100}


class ParseWorker(zmqpipeline.SingleThreadedWorker):
    task_type = TaskType(settings.TASK_TYPE_PARSE)
    endpoint = EndpointAddress(settings.PARSE_ENDPOINT)
    collector_endpoint = EndpointAddress(settings.COLLECTOR_ENDPOINT)

    def handle_execution(self, data, *args, **kwargs):
        digest = data['url'].encode()
        for _ in range(2000):  # some CPU work
            digest = hashlib.sha256(digest).digest()
        return {'url': data['url'], 'link': data['link'], 'digest': digest.hex()[:8]}


WORKERS = {cls.__name__: cls for cls in (UrlWorker, FetchWorker, ParseWorker)}

if __name__ == '__main__':
    # One file, three workers: say which one to run (`zmqpipeline run examples/stages`
    # runs them all, with the collector and the distributor).
    import sys
    if len(sys.argv) != 2 or sys.argv[1] not in WORKERS:
        sys.exit('usage: python workers.py %s  (one worker per process; or: '
                 'zmqpipeline worker workers.py:FetchWorker)' % '|'.join(WORKERS))
    WORKERS[sys.argv[1]]().run()
