"""PMS polling mode: the connector as the HTTPPMS client of a PMS that serves the API itself (and a simulator)."""
