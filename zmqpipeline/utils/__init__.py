"""Compatibility helpers kept from the 2014 API: ``messages``, ``serializer``, ``shutdown``."""
