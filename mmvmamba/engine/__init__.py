"""MMEngine runtime: hooks (``hooks``), the distributed set-up on CPUs and
tear-down (``distributed``), the data-parallel replica check
(``replicas``), all-or-nothing local writes (``storage``) and the
optimizer-wrapper constructor that ``torch.compile`` can trace
(``optim``)."""
