"""Certificates: the development CA, and which certificate serves a host (files, else the CA)."""
