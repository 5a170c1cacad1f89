"""The local content-addressed store: chunks, envelopes, keys, packs, the LMDB index, ingest,
restore, verify and JSON transfer. Imports only protocol and the shared base (errors, units)."""
