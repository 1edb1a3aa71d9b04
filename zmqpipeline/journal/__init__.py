"""Crash journals (SQLite, nothing to install): the store (:mod:`.store`), the distributor's
run journal (:mod:`.run`) and the collector's (:mod:`.collector`)."""
