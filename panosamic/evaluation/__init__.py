"""Evaluation: the reference's split-level metrics, edge metrics, multi-fold reports.

Entry points: ``panosamic evaluate`` (:mod:`.commands`), :func:`.evaluator.evaluate_model`,
:class:`.metrics.SegmentationMeter`.
"""
