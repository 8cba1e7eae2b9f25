"""The service: the queue of studies, the pool of workers that serves it, and `tuner serve`."""
