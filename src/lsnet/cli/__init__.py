"""`lsnet <verb>` command-line tools: thin wrappers that parse arguments and call library functions."""
