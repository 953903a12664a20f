"""The orchestrator's engine: connection actors, their pool, job runners and the scheduler.

No command line and no signals here (those are `app/`'s): this layer runs jobs it is given
over connections it is given, and leaves their records on disk through `store/`.
"""
