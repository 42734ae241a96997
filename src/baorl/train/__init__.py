"""Training engines: supervised warm start (`baorl sft`) and BAO reinforcement learning (`baorl train`).

Both are built on TRL (``SFTTrainer``, ``GRPOTrainer``); the BAO mathematics lives in `baorl.bao`
and is used unchanged here.
"""
