"""Training with the reference's protocol: losses, Ranger21 plan, the DDP trainer, checkpoints.

Entry points: ``panosamic train`` (:mod:`.commands`), :func:`.trainer.run_training`
with :class:`.options.TrainOptions`.
"""
