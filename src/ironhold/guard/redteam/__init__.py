"""``ironhold redteam``: probe any OpenAI-compatible endpoint with attacks and benign requests
grouped by the OWASP Top 10 for LLM Applications (2025), and score what gets through."""

from ironhold.guard.redteam.corpus import CATEGORIES, Corpus, Probe, load_corpus, select
from ironhold.guard.redteam.runner import RedteamError, Result, Runner, Target, scorecard

__all__ = ["CATEGORIES", "Corpus", "Probe", "RedteamError", "Result", "Runner", "Target",
           "load_corpus", "scorecard", "select"]
