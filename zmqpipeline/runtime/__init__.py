"""What every role runs on: sockets and frames (:mod:`.transport`), the role's runtime and the
one guard around user code (:mod:`.runtime`), and the class checks of every role (:mod:`.checks`)."""
