"""The runtime guard: input and output scanners and their actions (block, redact, flag, reroute).

- ``normalize``: undoes obfuscation (encodings, invisible and tag characters, homoglyphs, leet,
  spacing) before anything reads the text.
- ``injection``: prompt injection and jailbreaks: rules, then a learned classifier
  (``classifier``, trained by ``train`` on the features of ``features``).
- ``pii``, ``secrets``: personal data and credentials (phonenumbers, python-stdnum,
  detect-secrets).
- ``leaks``: system-prompt leaks (canary, verbatim overlap), exfiltration links, invisible text,
  refusals.
- ``engine`` decides, ``redact`` writes placeholders, ``stage`` is the pipeline stage.
"""

from ironhold.guard.classifier import InjectionModel
from ironhold.guard.engine import Guard, RequestGuard
from ironhold.guard.findings import Finding
from ironhold.guard.injection import InjectionScanner
from ironhold.guard.stage import GuardStage

__all__ = ["Finding", "Guard", "GuardStage", "InjectionModel", "InjectionScanner",
           "RequestGuard"]
