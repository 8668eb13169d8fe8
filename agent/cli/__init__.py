"""The `cua` command line: `app` (agent.cli.app), one module per command, `main` (agent.cli.main)."""
