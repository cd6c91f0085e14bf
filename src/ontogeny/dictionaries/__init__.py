"""Sparse dictionaries (SAEs): one `Dictionary` with interchangeable activation rules (`RULES`), one
generic trainer (`train`, `train_many`), ATM as a trainer policy, metrics, absorption and SAELens I/O."""

from ontogeny.dictionaries.atm import ATMConfig, ATMPolicy
from ontogeny.dictionaries.config import DictionaryConfig
from ontogeny.dictionaries.model import Dictionary, geometric_median
from ontogeny.dictionaries.rules import RULES, Rule, make_rule
from ontogeny.dictionaries.saelens_io import load_dictionary, save_dictionary
from ontogeny.dictionaries.state import StepOutput, TrainState
from ontogeny.dictionaries.train import TrainConfig, Trainer, TrainResult, train, train_many

__all__ = [
           "RULES",
           "ATMConfig",
           "ATMPolicy",
           "Dictionary",
           "DictionaryConfig",
           "Rule",
           "StepOutput",
           "TrainConfig",
           "TrainResult",
           "TrainState",
           "Trainer",
           "geometric_median",
           "load_dictionary",
           "make_rule",
           "save_dictionary",
           "train",
           "train_many",
]
