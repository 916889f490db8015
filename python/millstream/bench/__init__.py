"""Millstream's benchmarks.

- `gen`: a deterministic, realistic event mix (MES telemetry and Odoo webhooks, with
  duplicates, stale updates and bad events) for `examples/manufacturing.yaml`.
- `baseline`: the same pipeline in optimised pure Python (msgspec, dicts), the honest
  comparison the performance budget is stated against.
- `core`: `millstream bench core`, the in-process core against that baseline, in one run.
"""
