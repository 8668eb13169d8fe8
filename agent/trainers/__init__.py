"""Adapters for RL trainers: verl's agent loop (`verl_loop`) and TRL's environment_factory
(`trl_env`). Both drive qwen-cua environments and show the model the cookbook's tools."""
