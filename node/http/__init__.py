"""The HTTP face: a REST API, resumable uploads, live events and the web UI, served in the daemon."""
