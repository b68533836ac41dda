"""The floor every other package stands on (errors and exit codes, the model contract, paths,
atomic writes, signals, option parsing); it imports nothing of ours."""
