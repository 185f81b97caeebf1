"""llmserve: an OpenAI-compatible inference server with a continuous-batching engine."""

__version__ = "0.1.0"
