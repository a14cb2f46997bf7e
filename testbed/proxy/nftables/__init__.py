"""kube-proxy ``--proxy-mode=nftables``: names, renderer, transactions, applier, goldens.

- ``render``: ``NftablesConfig``, ``render_base``/``render_service``/``render_table`` (pure);
- ``table``: the table as data, ``dump`` (knftables Dump() line syntax), ``sort_nft``;
- ``transaction``: ``full_sync``/``partial_sync``: desired table + kernel state -> transaction;
- ``sync``: ``NftablesSyncer``, the per-node sync state machine over the proxy model;
- ``compile``/``nfnl``: the transaction text as nf_tables netlink messages, sent as one batch;
- ``runner``: libnftables in-process (or ``nft -f -``): listings, and what ``compile`` refuses;
- ``syncer``, ``mode``: the proxy loop's ``Syncer`` and the registry entry;
- ``apply``: ``NftApplier``: ``nft`` in a given netns from outside the proxy, read-back, check;
- ``golden``: harness inputs and steps files -> dumps (``testbed render --proxy-mode nftables``).
"""
