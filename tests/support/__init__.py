"""Helpers the tests import (``from support.pipelines import ...``): roles built per test,
processes, the scheduler driven by hand, the CLI as a subprocess, CURVE keys, network
namespaces. Nothing here is collected as a test."""
