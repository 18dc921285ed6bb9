"""MMEngine runtime: hooks (``hooks``), the distributed set-up on CPUs and
tear-down (``distributed``), and the data-parallel replica check
(``replicas``)."""
