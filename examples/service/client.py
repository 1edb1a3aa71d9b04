import settings
from zmqpipeline import ServiceClient, ServiceError, TaskType


N_REQUESTS = 3

if __name__ == '__main__':
    client = ServiceClient(settings.FRONTEND_ENDPOINT, task_type=TaskType(settings.TASK_TYPE_UPPER))

    for i in range(N_REQUESTS):
        print('client issuing request')
        reply = client.request({
            'message': 'hello %d' % i
        })
        print('client received reply: %s' % str(reply))

    # a list fans out over the workers in parallel; the replies come back in order
    ls = [{
        'message': 'hello 1',
    }, {
        'message': 'hello 2'
    }, {
        'message': 'hello 3'
    }]

    replies = client.request(ls)
    print('received replies: ', replies)

    # an exception in the worker comes back as an error the client raises
    try:
        client.request({'text': 'no message key'})
    except ServiceError as exc:
        print('request failed as expected: %s' % exc)

    client.close()
    print('finished')
