"""Datalog queries: parsing (``parser``) into an AST (``ast``); evaluation comes later."""
