"""Remote targets: where a worker runs when it is not this computer (DESIGN §3d).

A target is a Linux machine reached over SSH (asyncssh; nothing is installed as a daemon and
nothing listens on the target). The worker's JSON Lines protocol travels over the SSH channel;
the engine, the model and its data go to a cache on the target keyed by sha256.

Modules: config (the list of targets, no secrets), hostkeys (known_hosts checks and pinning),
engine (the engine archive), remote (one job on a target), relay (a local process that speaks the
worker protocol and runs the job remotely), probe (what a target has), setup (its venv), sweep
(jobs spread over several targets). asyncssh is imported inside functions only: the GUI imports
config to list targets.
"""
