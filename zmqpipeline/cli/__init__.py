"""The ``zmqpipeline`` command: ``main`` parses, ``discovery`` finds classes in modules and
folders, ``local`` runs a whole pipeline on this machine, ``service`` and ``keys`` add the
service-mode and CURVE-key commands."""

from .main import main

__all__ = ["main"]
