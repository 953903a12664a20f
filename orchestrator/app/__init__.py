"""The applications: the batch runner, the daemon, the interactive chat and the command line.

Nothing in the package imports this layer except `__main__`: it is the top.
"""
