"""The one error type for bad input."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and what
    is allowed."""
