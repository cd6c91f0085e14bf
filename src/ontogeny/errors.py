"""Errors ontogeny raises for bad input; each message names the file or parameter at fault."""


class OntogenyError(Exception):
    """Base class: bad input or state the user can fix."""


class SeriesError(OntogenyError):
    """A checkpoint series is missing, corrupt or inconsistent (architecture, tokenizer)."""


class SiteError(OntogenyError):
    """A hook site name is unknown or does not exist in the model."""


class StoreError(OntogenyError):
    """An artifact on disk (activation shard, dictionary, table) is missing or corrupt."""


class ConfigError(OntogenyError):
    """A configuration is invalid."""
