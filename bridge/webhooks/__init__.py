"""Outreach webhooks: the intake that stores deliveries and the consumer that drains them."""
