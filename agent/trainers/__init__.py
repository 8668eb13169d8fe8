"""Adapters for RL trainers: verl's agent loop (`verl_loop`) and TRL's environment_factory
(`trl_env`). Both run each rollout as an episode of the engine's episode rule
(`episodes`: a dataset row's task on a host, generated text as a policy output) and
compose the reward terms of `rewards`."""
