"""The `kernel` command line: start a worker, list plugins, show the graph, send and read tasks."""
