"""The benchmark harness: Stepline and DBOS Transact on the same workloads and PostgreSQL.

Run it with ``python -m bench`` (see ``bench/__main__.py``); results go to bench/RESULTS.md.
"""
