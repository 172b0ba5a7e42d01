"""systemd integration: the notify protocol (``smsgw.sdnotify``) and the daemon speaking it."""
