"""MMEngine runtime: hooks (``hooks``), the distributed set-up on CPUs and
tear-down (``distributed``), the data-parallel replica check
(``replicas``) and all-or-nothing local writes (``storage``)."""
