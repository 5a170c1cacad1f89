"""Several machines: identity, transport, peer authentication, peers, replication state, chunk
exchange and the daemon. Imports store and cloud."""
