"""Stand-ins for the outside world (remote APIs), run as real server processes."""
