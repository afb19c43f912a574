"""The leaf layer: typed parameters, the pipeline spec, paths and the cron grammar.

It imports nothing of nbops above it.
"""
