"""Capability probes over any checkpoint series, their curves and change points (emergence steps).

A probe is one registered function (`probes.py`); `curves.py` runs the configured probes at every
checkpoint; `detect.py` and `events.py` find when each curve jumps. The synthetic-task lab that studies
*why* capabilities emerge lives in `ontogeny.emergence` and reuses `detect.py`.
"""
