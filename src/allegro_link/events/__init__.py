"""The event feed: commit-ordered sequencing, the feed and history queries, long-poll wake-ups."""
