"""Errors that the command line reports as one line, without a traceback."""


class ConfigError(ValueError):
    """A config value is invalid. The message names the key and the allowed values."""


def check(condition: bool, key: str, value, allowed: str) -> None:
    """Raise ``ConfigError`` naming ``key`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"{key}={value!r} is invalid: allowed {allowed}")
