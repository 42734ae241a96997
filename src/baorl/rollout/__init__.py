"""Token-level rollouts: the batched engine, one episode's token bookkeeping, the token-in/token-out
and vLLM drivers, and `hf.HFPolicy` (a local model played by the engine).

Text-level agents are played by `baorl.runs` (`play.py`), which sits above this package and
`baorl.agents`; neither of those two imports the other.
"""
