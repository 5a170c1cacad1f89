"""Fan-out to backends: the hub, placement, the upload queue, cache, gc, scrub and repair, index
copies and recovery, credentials. Imports store and backends."""
