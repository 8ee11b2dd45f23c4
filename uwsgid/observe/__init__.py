"""What the server tells about itself: the request log, the scoreboard, the stats server."""
