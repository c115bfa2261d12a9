"""Ironhold: a trust layer for self-hosted AI.

One deployable that every AI call passes through; it speaks the OpenAI HTTP API and makes each
call resilient, secure and observable. See ``docs/`` and the project README.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
