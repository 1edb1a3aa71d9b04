import settings
import zmqpipeline
from zmqpipeline import TaskType, EndpointAddress


class UrlTask(zmqpipeline.Task):
    """Stage 1: hands out N_URLS addresses (a plain task, as in the tutorial)."""
    task_type = TaskType(settings.TASK_TYPE_URLS)
    endpoint = EndpointAddress(settings.URLS_ENDPOINT)
    n_items = settings.N_URLS
    collect_results = False  # the collector need not see them: they only feed FETCH

    def __init__(self):
        super().__init__()
        self.n = 0

    def handle(self, data, address, msgtype):
        self.n += 1
        if self.n >= settings.N_URLS:
            self.is_complete = True
        return {'url': 'https://example.org/page/%d' % self.n}


class FetchTask(zmqpipeline.Task):
    """Stage 2: fed by every collected URLS result as it arrives, while URLS still runs."""
    task_type = TaskType(settings.TASK_TYPE_FETCH)
    endpoint = EndpointAddress(settings.FETCH_ENDPOINT)
    sources = [TaskType(settings.TASK_TYPE_URLS)]

    def derive(self, result, item_id):
        # skip every tenth page (filtering: None hands out nothing)
        if result['url'].endswith('0'):
            return None
        return {'url': result['url']}


class ParseTask(zmqpipeline.Task):
    """Stage 3: each fetched page yields LINKS_PER_PAGE items to parse (fan-out)."""
    task_type = TaskType(settings.TASK_TYPE_PARSE)
    endpoint = EndpointAddress(settings.PARSE_ENDPOINT)
    sources = [TaskType(settings.TASK_TYPE_FETCH)]

    def derive(self, result, item_id):
        return [{'url': result['url'], 'link': k, 'size': result['size']}
                for k in range(settings.LINKS_PER_PAGE)]
