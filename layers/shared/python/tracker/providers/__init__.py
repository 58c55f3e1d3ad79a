"""Providers: one package per provider API (fullstory/, keboola/) behind the protocols of base.py, all
talking HTTP through http.py. Which job type a provider serves is declared in tracker/catalogue.py."""
