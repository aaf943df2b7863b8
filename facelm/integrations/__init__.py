"""facelm in other frameworks: ``facelm.integrations.ray`` (Ray Data's ``map_batches``; docs/scale.md).

Each integration imports its framework only when used, and is installed as an extra (``pip install
'facelm[ray]'``).
"""
