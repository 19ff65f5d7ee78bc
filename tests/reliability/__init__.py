"""Reliability: FIFO under concurrency and the whole connector under AWS and UCM faults (`make reliability`)."""
