"""LLM agents: chat backends (vLLM, OpenAI-compatible HTTP, transformers, scripted for tests), a call
cache with token and cost accounting, prompt templates, robust JSON parsing, and the LLM Examiner,
Questioner, Teacher and Assessor that implement the role interfaces of `agents/roles.py`."""
