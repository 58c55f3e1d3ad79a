"""The `jobtracker` command line's client side: stack discovery, the SigV4 API client, the live watch.

Not deployed: it may use click and rich. Commands are registered in jobtracker.cli.
"""
