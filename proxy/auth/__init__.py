"""Client authentication (the ``clients:`` policy section): API keys file and JWT bearer tokens."""
