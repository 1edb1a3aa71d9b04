"""What every role runs on: sockets and frames (:mod:`.transport`), the role's runtime and the
one guard around user code (:mod:`.runtime`), the class checks of every role (:mod:`.checks`),
the done-seqs set (:mod:`.seen`) and the one way a role says it waits (:mod:`.waitlog`)."""
