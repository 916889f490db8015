"""The `millstream demo`: a simulated plant publishing to a running Millstream, with a live view.

Placeholder so the package imports; `run_demo` (wiring the service) is added by the service
owner. The plant is `millstream.demo.plant`, the view `millstream.demo.view`.
"""
