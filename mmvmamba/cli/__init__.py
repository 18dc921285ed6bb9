"""What the command-line tools (``tools/``) share: ``entry`` (warnings hidden
at start, CPU thread count) and ``preflight`` (the checks before a tool
builds a Runner)."""
