"""Grandstream UCM PMS API: commands, client and (for tests and local mode) a simulator."""
