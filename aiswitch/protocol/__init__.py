"""The aiswitch protocol on top of JSON-RPC 2.0: models and their generated docs."""
