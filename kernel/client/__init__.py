"""The client API: App, Task, signatures, results, and running a task in-process."""
