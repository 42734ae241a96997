"""BAO on verl 0.9 (Ray): the same gyms, simulators, shaping and credit as the TRL path, at cluster scale.

verl owns the cluster (Ray), the policy's training (FSDP/Megatron) and generation (vLLM/SGLang
server pools); baorl plugs in three pieces, each calling the engine-neutral code the TRL path
calls:

- `baorl.train.verl.agent_loop.BaorlAgentLoop` — a verl agent loop that plays one baorl episode
  against verl's LLM servers with `baorl.rollout.driver` (policy tokens mask 1, observation
  tokens 0, as sampled) and shapes its turn rewards with `baorl.bao.shape_rewards`; each turn's
  shaped reward travels to the advantage step on its turn's last token (``rm_scores``);
- the ``bao`` advantage estimator (`advantages.bao_token_advantages`): turn spans from the
  response mask, trajectory score, turn credits, group advantages and token redistribution, all
  by `baorl.bao`;
- the ``bao`` policy loss: `baorl.bao.ppo_loss` with verl's global token normalisation.

`baorl.train.verl.plugin` registers the estimator and the loss with verl (loaded in every verl
process through the ``verl.plugins`` entry point); `baorl.train.verl.launch` writes verl's
configuration and data from a baorl config and starts ``verl.trainer.main_ppo``.

Only `advantages` and `launch` import without verl; the rest needs the ``verl`` extra.
"""
