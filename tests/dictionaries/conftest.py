"""Test parameters of every registered activation rule: adding a rule means adding its entry here
(`test_every_rule_has_test_parameters` fails until it exists). Tests read them through the `rule_params`
fixture.

- "small": extra DictionaryConfig fields for the d_in 12 / d_sae 40 fast-vs-plain and round-trip tests;
- "planted": extra fields for planted recovery (d_in 24, d_sae 96; 48 features, 3 active per token);
- "saelens": the SAELens architecture the rule is saved as.
"""

from __future__ import annotations

import pytest

RULE_PARAMS = {
    "relu": {"small": {}, "planted": {"l1_coefficient": 0.3}, "saelens": "standard"},
    "topk": {"small": {"k": 4}, "planted": {"k": 3}, "saelens": "topk"},
    "batchtopk": {"small": {"k": 4}, "planted": {"k": 3, "threshold_start_step": 200}, "saelens": "jumprelu"},
    "jumprelu": {"small": {"jumprelu_bandwidth": 0.2, "jumprelu_init_threshold": 0.3},
                 "planted": {"l0_coefficient": 0.05, "jumprelu_bandwidth": 0.05, "jumprelu_init_threshold": 0.1},
                 "saelens": "jumprelu"},
    "matryoshka_batchtopk": {"small": {"k": 4, "matryoshka_widths": [8, 20]},
                             "planted": {"k": 3, "threshold_start_step": 200, "matryoshka_widths": [24, 48]},
                             "saelens": "jumprelu"},
}


@pytest.fixture
def rule_params() -> dict:
    return RULE_PARAMS
