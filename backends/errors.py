"""The exceptions costroute raises, drawn in one place.

    CostrouteError                 base of everything below
    +-- InvalidRequestError        the request is wrong; nothing was generated (HTTP 400)
    |   +-- EmptyPromptError       no prompt text / no prompt tokens
    |   +-- PromptTooLongError     prompt (+ max_tokens) does not fit the model's context
    |   +-- InvalidSamplingError   a sampling parameter is out of range (names the field)
    |   +-- UnknownTokenError      a prompt token id is outside the vocabulary
    +-- ConfigError                an engine or fleet option is wrong (names the field)
    |   +-- ProviderUnavailableError  an ONNX Runtime execution provider is not installed
    +-- ModelNotFoundError         the model files are missing or do not match their manifest
    +-- EngineError                the engine cannot serve right now
        +-- EngineNotStartedError  `generate` before `start()` or after `shutdown()`
        +-- EngineDeadError        the engine loop died; restart the engine (HTTP 503)

Every message says what was wrong and what to do about it. The HTTP layer maps
InvalidRequestError to 400 with the OpenAI error shape and `param` set to `field`.
"""

from __future__ import annotations


class CostrouteError(Exception):
    """Base class of all costroute errors."""


class InvalidRequestError(CostrouteError, ValueError):
    """The request cannot be served as given. `field` names the offending parameter."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class EmptyPromptError(InvalidRequestError):
    pass


class PromptTooLongError(InvalidRequestError):
    pass


class InvalidSamplingError(InvalidRequestError):
    pass


class UnknownTokenError(InvalidRequestError):
    pass


class ConfigError(CostrouteError, ValueError):
    """An option is wrong. `field` names it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProviderUnavailableError(ConfigError):
    pass


class ModelNotFoundError(CostrouteError, FileNotFoundError):
    pass


class EngineError(CostrouteError, RuntimeError):
    pass


class EngineNotStartedError(EngineError):
    pass


class EngineDeadError(EngineError):
    pass
