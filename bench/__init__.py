"""llf benchmarks: what llf costs on top of vLLM and the Hub, measured as side-by-side ratios.

Each benchmark runs llf's path and a bare baseline in the same run, alternating, so that the
noise of a shared machine hits both; results go to ``bench/results/<name>.json`` and the README
table (``python -m bench.run``). A benchmark never fails on a number: it reports.
"""
