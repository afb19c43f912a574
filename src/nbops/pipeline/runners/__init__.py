"""One runner per pipeline task: what its notebook calls, and what a plain-Python run calls.

Each runner takes a resolved :class:`~nbops.pipeline.context.Stage` (typed parameters and product
paths), does the stage's work through the library and the engine its parameters choose, logs it to
W&B, and returns what the notebook shows. Nothing here knows the order of the stages: that lives in
``pipeline.yaml`` only. A module per task keeps each task's run identity to the code it runs.
"""
