"""Provider modules, one per API, behind the small protocol in base.py."""
