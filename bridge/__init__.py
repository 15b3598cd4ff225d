"""bridge: keeps Zendesk custom object records in sync with Outreach records."""

__version__ = "0.1.0"
