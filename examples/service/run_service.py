import settings
from zmqpipeline import Service


if __name__ == '__main__':
    service = Service(settings.FRONTEND_ENDPOINT, settings.BACKEND_ENDPOINT)

    print('running service (Ctrl-C stops it and its workers)')
    service.run()

    print('finished')
