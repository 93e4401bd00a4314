"""The transactor process: configuration, lease and heartbeat, network server, pipeline."""
