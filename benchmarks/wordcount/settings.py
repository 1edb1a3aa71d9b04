"""The word count's settings: where the files are, where the merged counts go."""

import os

import zmqpipeline

ROOT = os.environ.get("WORDCOUNT_ROOT", "/usr/share/doc")
OUT = os.environ.get("WORDCOUNT_OUT", "wordcount.json")
FREQUENCIES = os.environ.get("WORDCOUNT_FREQUENCIES") == "1"  # each word's count, merged

zmqpipeline.TaskType.register_type("COUNT")
