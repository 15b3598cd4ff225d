"""The handlers behind `bridge <command>`, grouped by what they are about."""
