"""MMEngine integration: hooks (``hooks``) and the data-parallel replica
check (``replicas``)."""
