"""pms-connector: hotel PMS ⇄ char pmslink HTTPPMS ⇄ Grandstream UCM, for many properties from one deployment."""

__version__ = "0.1.0"
