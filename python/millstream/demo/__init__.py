"""`millstream demo`: a simulated plant publishing into a running Millstream, with a live view.

`plant` makes the events (`simulate`), `view` shows the router's stats while they flow and
summarises the run (`LiveView`, `summary_table`), `run` wires them to the service.
"""
