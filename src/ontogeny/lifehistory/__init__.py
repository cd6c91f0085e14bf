"""Feature life histories (Stecher et al. 2026, arXiv 2605.18789; definitions partly PROPOSAL).

match (adjacent checkpoints) -> lineage (chains, survival) -> turnover (early vs late) -> scaffold
(hierarchy, carriers, recruitment) -> predict (carriers from onset firing); analysis runs them all on
plain tensors, loadbearing ablates carriers against controls, study runs the stage on a run directory.
"""
