"""The model card's import path of the instance refinement (:mod:`panosamic.instances.refine`).

Usage, as on the model card::

    from panosamic.model.instance_semantic_fusion import refine_semantic_with_instances
    if instance_masks:
        sem_preds = refine_semantic_with_instances(sem_preds, instance_masks)
    seg_map = sem_preds.argmax(dim=0)
"""

from ..instances.refine import refine_semantic_with_instances

__all__ = ["refine_semantic_with_instances"]
