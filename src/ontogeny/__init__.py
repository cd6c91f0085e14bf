"""ontogeny: developmental interpretability over checkpoint series.

Studies how a network's features and capabilities are born, live and die during training:
sparse dictionaries per checkpoint, feature life histories, crosscoders, causal tests,
singular-learning-theory measurements and detection of abrupt emergence.
"""

__version__ = "0.1.0"
