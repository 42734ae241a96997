"""baorl: train and evaluate proactive multi-turn LLM agents with BAO (Behavioral Agentic Optimization)."""

__version__ = "0.1.0"
