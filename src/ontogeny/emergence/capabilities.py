"""Moved to `ontogeny.capabilities` (temporary re-export until every caller imports from there)."""

from ontogeny.capabilities.config import CapabilityConfig, PromptPair  # noqa: F401
from ontogeny.capabilities.pipeline import capabilities_run  # noqa: F401
