"""zendesk."""
