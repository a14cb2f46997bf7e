"""kube-proxy ``--proxy-mode=nftables``: names, renderer, transactions, applier, goldens.

- ``render``: ``NftablesConfig``, ``render_base``/``render_service``/``render_table`` (pure);
- ``table``: the table as data, ``dump`` (knftables Dump() line syntax), ``sort_nft``;
- ``transaction``: ``full_sync``/``partial_sync``: desired table + kernel state -> transaction;
- ``sync``: ``NftablesSyncer``, the per-node sync state machine over the proxy model;
- ``apply``: ``NftApplier``: one ``nft -f -`` per sync inside a node's netns, read-back, cleanup;
- ``golden``: harness inputs and steps files -> dumps (``testbed render --proxy-mode nftables``).
"""
