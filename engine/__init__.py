"""Training and evaluation: ``engine.train.fit`` (one engine for every model, DDP under torchrun),
``engine.checkpoint`` (self-describing checkpoints), ``engine.evaluate`` / ``engine.metrics``
(honest comparison with CIs and paired tests), ``engine.report``, ``engine.demo`` (the main job)
and ``engine.cli`` (the ``hand-gestures`` command).
"""
