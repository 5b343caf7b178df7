"""Training and evaluation on top of the data side and the models: ``engine.train.fit`` (one engine
for every model, DDP under torchrun), ``engine.recipes`` (every training default), ``engine.loop``
(the per-batch loops), ``engine.checkpoint`` (self-describing checkpoints), ``engine.evaluate`` /
``engine.metrics`` (honest comparison with CIs and paired tests), ``engine.reporting`` (tables,
figures, the HTML report), ``engine.demo`` (the main job), ``engine.notebook`` (what notebooks
call) and ``engine.cli`` (the ``hand-gestures`` command).
"""
