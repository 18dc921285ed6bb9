"""What every op folder uses: :mod:`.launch` (``Launcher``: a compiled Triton
kernel launched without Triton's per-call Python), :mod:`.eager` (a custom
op's implementation called under a plain ``autograd.Function`` in eager mode)
and :mod:`.util` (integer helpers for launch grids)."""
