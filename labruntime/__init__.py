"""labruntime: the session, task and device runtime for remote laboratories."""
