"""Offline tools beside the serving core: export, verifier training, calibration, evaluation.

Installed with the extras that name who needs what (`[export]`, `[train]`, `[eval]`); the
proxy (cache_proxy) never imports this package's modules except the CLI wiring (commands.py).
"""
